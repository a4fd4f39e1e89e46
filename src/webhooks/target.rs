//! Where webhooks may go. A subscription's URL must be http(s); the addresses it resolves to are
//! checked when the connection is made (so DNS cannot be switched to an inside address after the
//! URL was accepted), and loopback, private, link-local and other non-public addresses are
//! refused unless `EMGW_WEBHOOK_ALLOW_PRIVATE=true`. Redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

/// The longest subscription URL taken: enough for any real endpoint with a token in it.
pub const MAX_URL: usize = 2048;

/// Checks a subscription URL when it is created.
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none() {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    check_address(&url, allow_private)?;
    Ok(url)
}

/// Checks that a parsed subscription URL does not name a non-public address literally (names
/// are judged at every connection, by the addresses they resolve to).
pub fn check_address(url: &Url, allow_private: bool) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>()
        && !allow_private
        && !is_public(ip)
    {
        return Err(format!(
            "points at a non-public address ({ip}); set EMGW_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        ));
    }
    Ok(())
}

/// A resolver that drops non-public addresses unless they are allowed.
struct Guarded {
    allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address (refused)").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for deliveries.
pub fn client(allow_private: bool, timeout: Duration) -> Result<reqwest::Client, String> {
    let tls = crate::em::tls::client_config(&Default::default()).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(Arc::new(Guarded { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("em-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A literal-IP URL bypasses the resolver, so it is checked here before every send.
pub fn literal_allowed(url: &Url, allow_private: bool) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => allow_private || is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => allow_private || is_public(IpAddr::V6(ip)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_http_and_public() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("ftp://hooks.example.com/x", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(check_url("http://[::1]:9000/", false).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
        assert!(
            check_url(
                &format!("https://hooks.example.com/{}", "a".repeat(2022)),
                false
            )
            .is_ok()
        );
        assert!(
            check_url(
                &format!("https://hooks.example.com/{}", "a".repeat(2023)),
                false
            )
            .is_err()
        );
    }
}
