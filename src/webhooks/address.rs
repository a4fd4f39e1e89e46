//! Which addresses a webhook may reach: the IANA special-purpose registries (IPv4 and IPv6) as
//! data, one row per range.
//!
//! Two IPv6 ranges carry an IPv4 address in their last 32 bits and are judged by it: IPv4-mapped
//! `::ffff:0:0/96` (a dual-stack socket connects to the IPv4 address itself) and the NAT64
//! well-known prefix `64:ff9b::/96` (under DNS64 every IPv4-only consumer resolves into it, so
//! refusing it outright would cut IPv6-only deployments off). Every other range that embeds an
//! IPv4 address is refused whole: IPv4-compatible `::/96` (deprecated), NAT64 local-use
//! `64:ff9b:1::/48` (the embedding is the operator's choice), 6to4 `2002::/16` (deprecated) and
//! Teredo `2001::/32` (inside the refused `2001::/23`). So no encoding of a private, loopback or
//! link-local IPv4 address passes. Outside these rows, IPv6 is public only inside the global
//! unicast space `2000::/3`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an address inside a range is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Refuse,
    /// By the IPv4 address in its last 32 bits.
    ByEmbeddedIpv4,
}

struct Range {
    first: IpAddr,
    len: u8,
    /// The range as written in the registry, then what it is.
    label: &'static str,
    rule: Rule,
}

impl Range {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.first, ip) {
            (IpAddr::V4(first), IpAddr::V4(ip)) => {
                (first.to_bits() ^ ip.to_bits())
                    .checked_shr(32 - u32::from(self.len))
                    .unwrap_or(0)
                    == 0
            }
            (IpAddr::V6(first), IpAddr::V6(ip)) => {
                (first.to_bits() ^ ip.to_bits())
                    .checked_shr(128 - u32::from(self.len))
                    .unwrap_or(0)
                    == 0
            }
            _ => false,
        }
    }
}

const fn v4(octets: [u8; 4], len: u8, label: &'static str) -> Range {
    let [a, b, c, d] = octets;
    Range {
        first: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        len,
        label,
        rule: Rule::Refuse,
    }
}

const fn v6(segments: [u16; 8], len: u8, label: &'static str, rule: Rule) -> Range {
    let [a, b, c, d, e, f, g, h] = segments;
    Range {
        first: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
        len,
        label,
        rule,
    }
}

use Rule::{ByEmbeddedIpv4, Refuse};

/// Not reachable on the public internet, or not meant to be (RFC 6890 and its updates). The
/// label's range is checked against the numbers by a test.
#[rustfmt::skip]
const SPECIAL: &[Range] = &[
    v4([0, 0, 0, 0],         8,  "0.0.0.0/8 this network"),
    v4([10, 0, 0, 0],        8,  "10.0.0.0/8 private-use"),
    v4([100, 64, 0, 0],      10, "100.64.0.0/10 shared address space (CGNAT)"),
    v4([127, 0, 0, 0],       8,  "127.0.0.0/8 loopback"),
    v4([169, 254, 0, 0],     16, "169.254.0.0/16 link-local"),
    v4([172, 16, 0, 0],      12, "172.16.0.0/12 private-use"),
    v4([192, 0, 0, 0],       24, "192.0.0.0/24 IETF protocol assignments"),
    v4([192, 0, 2, 0],       24, "192.0.2.0/24 documentation"),
    v4([192, 88, 99, 0],     24, "192.88.99.0/24 6to4 relay anycast"),
    v4([192, 168, 0, 0],     16, "192.168.0.0/16 private-use"),
    v4([198, 18, 0, 0],      15, "198.18.0.0/15 benchmarking"),
    v4([198, 51, 100, 0],    24, "198.51.100.0/24 documentation"),
    v4([203, 0, 113, 0],     24, "203.0.113.0/24 documentation"),
    v4([224, 0, 0, 0],       4,  "224.0.0.0/4 multicast"),
    v4([240, 0, 0, 0],       4,  "240.0.0.0/4 reserved"),
    v4([255, 255, 255, 255], 32, "255.255.255.255/32 limited broadcast"),
    v6([0, 0, 0, 0, 0, 0, 0, 0],            128, "::/128 unspecified", Refuse),
    v6([0, 0, 0, 0, 0, 0, 0, 1],            128, "::1/128 loopback", Refuse),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0],       96,  "::ffff:0:0/96 IPv4-mapped", ByEmbeddedIpv4),
    v6([0, 0, 0, 0, 0, 0, 0, 0],            96,  "::/96 IPv4-compatible", Refuse),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0],    96,  "64:ff9b::/96 NAT64", ByEmbeddedIpv4),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0],    48,  "64:ff9b:1::/48 local-use NAT64", Refuse),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0],        64,  "100::/64 discard-only", Refuse),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0],       23,  "2001::/23 IETF protocol assignments", Refuse),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0],       32,  "2001::/32 Teredo", Refuse),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],   32,  "2001:db8::/32 documentation", Refuse),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0],       16,  "2002::/16 6to4", Refuse),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0],       20,  "3fff::/20 documentation", Refuse),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0],       16,  "5f00::/16 SRv6 SIDs", Refuse),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0],       7,   "fc00::/7 unique local", Refuse),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0],       10,  "fe80::/10 link-local", Refuse),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0],       10,  "fec0::/10 site-local", Refuse),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0],       8,   "ff00::/8 multicast", Refuse),
];

/// IPv6 global unicast: everything outside it is reserved, unallocated or special.
const GLOBAL_UNICAST: Range = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, "2000::/3", Refuse);

const NOT_GLOBAL_UNICAST: &str = "outside 2000::/3 (IPv6 global unicast)";

/// Why `ip` is not public: the label of the range that refuses it (for an address that embeds
/// an IPv4 address, the IPv4 range). `None`: public.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    // The most specific range decides (`::1/128` inside `::/96`, Teredo inside `2001::/23`).
    let range = SPECIAL
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.len);
    match (range, ip) {
        (Some(r), IpAddr::V6(v6)) if r.rule == ByEmbeddedIpv4 => {
            let [.., a, b, c, d] = v6.octets();
            refusal(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        (Some(r), _) => Some(r.label),
        (None, IpAddr::V6(_)) if !GLOBAL_UNICAST.contains(ip) => Some(NOT_GLOBAL_UNICAST),
        (None, _) => None,
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The range a label names, as `(first address, prefix length)`.
    fn cidr(label: &str) -> (IpAddr, u8) {
        let (first, len) = label.split(' ').next().unwrap().split_once('/').unwrap();
        (ip(first), len.parse().unwrap())
    }

    #[test]
    fn every_label_names_its_own_range() {
        for r in SPECIAL.iter().chain([&GLOBAL_UNICAST]) {
            assert_eq!(cidr(r.label), (r.first, r.len), "{}", r.label);
        }
    }

    #[test]
    fn each_special_purpose_range_is_refused_and_its_neighbour_is_not() {
        // The range, an address inside it (its last where that is the edge), and the nearest
        // public address outside it where there is one.
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("0.0.0.0/8", "0.255.255.255", Some("1.0.0.0")),
            ("10.0.0.0/8", "10.255.255.255", Some("11.0.0.0")),
            ("100.64.0.0/10", "100.127.255.255", Some("100.128.0.0")),
            ("127.0.0.0/8", "127.0.0.1", Some("128.0.0.0")),
            ("169.254.0.0/16", "169.254.169.254", Some("169.255.0.0")),
            ("172.16.0.0/12", "172.31.255.255", Some("172.32.0.0")),
            ("192.0.0.0/24", "192.0.0.170", Some("192.0.1.0")),
            ("192.0.2.0/24", "192.0.2.255", Some("192.0.3.0")),
            ("192.88.99.0/24", "192.88.99.1", Some("192.88.100.0")),
            ("192.168.0.0/16", "192.168.255.255", Some("192.169.0.0")),
            ("198.18.0.0/15", "198.19.255.255", Some("198.20.0.0")),
            ("198.51.100.0/24", "198.51.100.7", Some("198.51.101.0")),
            ("203.0.113.0/24", "203.0.113.7", Some("203.0.114.0")),
            ("224.0.0.0/4", "239.255.255.255", Some("223.255.255.255")),
            ("240.0.0.0/4", "240.0.0.1", None),
            ("255.255.255.255/32", "255.255.255.255", None),
            ("::/128", "::", None),
            ("::1/128", "::1", None),
            ("::/96", "::10.0.0.1", None),
            ("::/96", "::8.8.8.8", None),
            ("64:ff9b:1::/48", "64:ff9b:1:ffff::808:808", None),
            ("100::/64", "100::ffff:ffff:ffff:ffff", None),
            ("2001::/23", "2001:1ff:ffff::1", Some("2001:200::1")),
            ("2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2", None),
            ("2001:db8::/32", "2001:db8:ffff::1", Some("2001:db9::1")),
            ("2002::/16", "2002:808:808::1", Some("2003::1")),
            ("3fff::/20", "3fff:fff::1", Some("3fff:1000::1")),
            ("5f00::/16", "5f00::1", None),
            ("fc00::/7", "fd00::1", None),
            ("fe80::/10", "febf::1", None),
            ("fec0::/10", "fec0::1", None),
            ("ff00::/8", "ff02::1", None),
        ];
        for (range, inside, outside) in rows {
            let refused = refusal(ip(inside)).unwrap_or_else(|| panic!("{inside} passes"));
            assert_eq!(
                refused.split(' ').next(),
                Some(*range),
                "{inside} is refused as {refused}"
            );
            if let Some(outside) = outside {
                assert_eq!(
                    refusal(ip(outside)),
                    None,
                    "{outside}, just outside {range}"
                );
            }
        }
        // Every row of the table is exercised.
        for r in SPECIAL {
            let named = cidr(r.label);
            assert!(
                r.rule == ByEmbeddedIpv4 || rows.iter().any(|(range, ..)| cidr(range) == named),
                "no row for {}",
                r.label
            );
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        for inside in ["1::1", "4000::1", "e000::1", "::2:0:0:1"] {
            assert_eq!(refusal(ip(inside)), Some(NOT_GLOBAL_UNICAST), "{inside}");
        }
        for public in ["2606:4700::1111", "2a00:1450::1", "3ffe::1"] {
            assert_eq!(refusal(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn mapped_and_nat64_addresses_are_judged_by_their_ipv4() {
        // (the address, the IPv4 range that refuses it or None: public)
        let rows = [
            ("::ffff:10.0.0.1", Some("10.0.0.0/8")),
            ("::ffff:127.0.0.1", Some("127.0.0.0/8")),
            ("::ffff:169.254.169.254", Some("169.254.0.0/16")),
            ("::ffff:0.0.0.0", Some("0.0.0.0/8")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::10.1.2.3", Some("10.0.0.0/8")),
            ("64:ff9b::127.0.0.1", Some("127.0.0.0/8")),
            ("64:ff9b::169.254.169.254", Some("169.254.0.0/16")),
            ("64:ff9b::192.168.0.1", Some("192.168.0.0/16")),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b::1.1.1.1", None),
        ];
        for (address, expected) in rows {
            let got = refusal(ip(address)).map(cidr);
            assert_eq!(got, expected.map(cidr), "{address}");
        }
    }

    #[test]
    fn no_encoding_of_an_inside_ipv4_address_passes() {
        for v4 in ["10.1.2.3", "127.0.0.1", "169.254.169.254", "192.168.1.1"] {
            let [a, b, c, d] = v4.parse::<Ipv4Addr>().unwrap().octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            let encodings = [
                format!("::ffff:{v4}"),                            // IPv4-mapped
                format!("::{v4}"),                                 // IPv4-compatible
                format!("64:ff9b::{v4}"),                          // NAT64, well-known prefix
                format!("64:ff9b:1::{v4}"),                        // NAT64, local use
                format!("2002:{hi:x}:{lo:x}::1"),                  // 6to4
                format!("2001:0:808:808:0:0:{:x}:{:x}", !hi, !lo), // Teredo (client obfuscated)
            ];
            for e in encodings {
                assert!(!is_public(ip(&e)), "{e} reaches {v4}");
            }
        }
    }

    #[test]
    fn public_addresses_pass() {
        for public in ["8.8.8.8", "1.1.1.1", "52.94.236.248", "2606:4700::1111"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }
}
