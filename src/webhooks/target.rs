//! Where webhooks may go. A subscription's URL must be http(s); the addresses it resolves to are
//! checked when the connection is made (so DNS cannot be switched to an inside address after the
//! URL was accepted), and loopback, private, link-local and other non-public addresses
//! ([`super::address`]) are refused unless `EMGW_WEBHOOK_ALLOW_PRIVATE=true`. Redirects are not
//! followed.
//!
//! Proxies named in the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) are ignored: a
//! proxy resolves and reaches the target itself, round every check made here. An egress proxy
//! is used only when named in `EMGW_WEBHOOK_PROXY`; then filtering the final target is its job
//! (the resolver here only ever sees the proxy's own name), and only literal-IP URLs are still
//! checked here, before each send.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::{is_public, refusal};

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
        && let Some(range) = refusal(ip)
    {
        return Err(format!(
            "points at a non-public address ({ip}, in {range}); set EMGW_WEBHOOK_ALLOW_PRIVATE=true to allow it"
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

/// Checks the egress proxy's URL (`EMGW_WEBHOOK_PROXY`).
pub fn check_proxy(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // It would be logged with the settings; an egress proxy on the host or the pod needs none.
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

/// The HTTP client for deliveries: straight to the target through the guarded resolver, or
/// through `proxy` when one is set.
pub fn client(
    allow_private: bool,
    timeout: Duration,
    proxy: Option<&Url>,
) -> Result<reqwest::Client, String> {
    let tls = crate::em::tls::client_config(&Default::default()).map_err(|e| e.to_string())?;
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // Never the environment's proxies: they would reach targets the resolver refuses.
        .no_proxy();
    let builder = match proxy {
        // The resolver sees only the proxy's name, often a sidecar's on loopback: not guarded.
        Some(proxy) => {
            builder.proxy(reqwest::Proxy::all(proxy.clone()).map_err(|e| e.to_string())?)
        }
        None => builder.dns_resolver(Arc::new(Guarded { allow_private })),
    };
    builder
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
    fn urls_must_be_http_and_public() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("ftp://hooks.example.com/x", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", false).is_err());
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
        assert!(check_url("http://[::1]:9000/", false).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
        // Literal addresses in every spelling the URL parser takes are judged as addresses.
        for inside in [
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:a00:1::1]/",
            "http://[fec0::1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://192.88.99.1/",
        ] {
            assert!(check_url(inside, false).is_err(), "{inside}");
            assert!(check_url(inside, true).is_ok(), "{inside}");
        }
        assert!(check_url("http://[64:ff9b::808:808]/", false).is_ok());
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

    #[test]
    fn the_proxy_must_be_an_http_url_without_credentials() {
        for ok in [
            "http://127.0.0.1:4750",
            "http://smokescreen:4750/",
            "https://egress.internal:443",
        ] {
            assert!(check_proxy(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:4750",
            "socks5://127.0.0.1:1080",
            "http://user:pw@proxy:3128",
            "x",
            "",
        ] {
            assert!(check_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literal_addresses_are_checked_before_each_send() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(!literal_allowed(&url("http://10.0.0.1/"), false));
        assert!(!literal_allowed(&url("http://[::ffff:10.0.0.1]/"), false));
        assert!(literal_allowed(&url("http://10.0.0.1/"), true));
        assert!(literal_allowed(&url("http://8.8.8.8/"), false));
        // A name is the resolver's (or the proxy's) to judge.
        assert!(literal_allowed(&url("http://localhost/"), false));
    }
}
