//! Semantic checks on single values (addresses, URLs, names, status ranges, files) and on
//! listen addresses across the whole file.
//!
//! Every check here is offline: addresses must be literal IPs and URLs are only parsed, because
//! `switchyard check` runs in CI and on build machines where DNS may be absent or different.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use http::Uri;
use http::uri::{Authority, Scheme};

use super::model::StatusRange;
use super::reader::{Diags, Span};

/// Parses `IP:port` (`[::1]:8080` for IPv6); host names are refused, never resolved.
pub(crate) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected IP:port such as 127.0.0.1:8080 \
             (host names are not resolved)"
        )
    })
}

/// Service and region names end up in URLs, metric labels and headers, so keep them plain.
pub(crate) fn name(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} name must not be empty"));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !text.chars().all(plain) {
        return Err(format!(
            "invalid {what} name {text:?}: use only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// A region's URL split into what the upstream client needs.
#[derive(Debug)]
pub(crate) struct RegionUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix without a trailing slash; "" when the URL has none.
    pub base_path: String,
}

/// `http://` or `https://` with a host; a path prefix is allowed, a query or fragment is not.
pub(crate) fn region_url(text: &str) -> Result<RegionUrl, String> {
    let bad = |why: &str| format!("invalid url {text:?}: {why}");
    if text.contains('#') {
        return Err(bad("a fragment (#...) is not allowed"));
    }
    let uri: Uri = text
        .parse()
        .map_err(|_| bad("expected http://host[:port][/path] or https://..."))?;
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        Some(other) => return Err(bad(&format!("scheme {other:?} is not http or https"))),
        None => return Err(bad("expected http:// or https:// followed by a host")),
    };
    let Some(authority) = uri.authority().cloned() else {
        return Err(bad("missing host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if authority.host().is_empty() {
        return Err(bad("missing host"));
    }
    if authority.as_str().contains(':')
        && authority.port_u16().is_none()
        && !is_bare_ipv6(&authority)
    {
        return Err(bad("invalid port"));
    }
    if uri.query().is_some() {
        return Err(bad("a query (?...) is not allowed"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(RegionUrl {
        scheme,
        authority,
        base_path,
    })
}

/// `[::1]` has colons but no port.
fn is_bare_ipv6(authority: &Authority) -> bool {
    authority.as_str().ends_with(']')
}

/// `"200"` or `"200-399"`, inclusive, within 100..=599.
pub(crate) fn status_range(text: &str) -> Result<StatusRange, String> {
    let parse = |part: &str| part.trim().parse::<u16>().ok();
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (parse(low), parse(high)),
        None => (parse(text), parse(text)),
    };
    let (Some(low), Some(high)) = (low, high) else {
        return Err(format!(
            "invalid expect_status {text:?}: expected a status code like \"200\" or a range like \"200-399\""
        ));
    };
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) {
        return Err(format!(
            "invalid expect_status {text:?}: status codes must be between 100 and 599"
        ));
    }
    if low > high {
        return Err(format!(
            "invalid expect_status {text:?}: the range is reversed"
        ));
    }
    Ok(StatusRange { low, high })
}

/// Resolves `text` against the config's folder and requires an existing file there.
pub(crate) fn existing_file(base: &Path, text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("file path must not be empty".to_owned());
    }
    let path = base.join(text);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Err(format!("not a file: {}", path.display())),
        Ok(_) => Ok(path),
        Err(_) => Err(format!("file not found: {}", path.display())),
    }
}

/// Listen addresses already claimed, to report two listeners on one port, and the addresses
/// regions point at, to report a region that is this sidecar itself.
#[derive(Default)]
pub(crate) struct Listeners {
    claimed: Vec<Claim>,
    targets: Vec<Target>,
}

/// A region URL whose host is an IP literal or `localhost`.
struct Target {
    ips: Vec<IpAddr>,
    port: u16,
    span: Span,
    url: String,
}

struct Claim {
    addr: SocketAddr,
    /// `None` when the address is a default, not written in the file.
    span: Option<Span>,
    owner: String,
}

impl Listeners {
    /// Records `addr` for `owner` ("service \"orders\"", "the admin API"). On a clash the error
    /// goes to whichever of the two is written later in the file and names the other.
    pub(crate) fn claim(
        &mut self,
        d: &mut Diags<'_>,
        addr: SocketAddr,
        span: Option<Span>,
        owner: String,
    ) {
        let new = Claim { addr, span, owner };
        if addr.port() != 0
            && let Some(old) = self.claimed.iter().find(|c| clash(c.addr, addr))
        {
            let (later, earlier) = match (&new.span, &old.span) {
                (Some(a), Some(b)) if b.start > a.start => (old, &new),
                (Some(_), _) => (&new, old),
                (None, Some(_)) => (old, &new),
                (None, None) => (&new, old),
            };
            let at = later.span.clone().unwrap_or(0..0);
            let location = match &earlier.span {
                Some(s) => format!("line {}", d.line_of(s.start)),
                None => "by default".to_owned(),
            };
            let message = format!(
                "listen address {} is already used by {} ({location}: {})",
                later.addr, earlier.owner, earlier.addr
            );
            d.error(&at, message);
        }
        self.claimed.push(new);
    }
}

impl Listeners {
    /// Records a region URL's host and port, when they are literal enough to compare without
    /// DNS (`check` never resolves names).
    pub(crate) fn target(&mut self, host: &str, port: u16, span: Span, url: &str) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ips = if host.eq_ignore_ascii_case("localhost") {
            vec![
                IpAddr::from(Ipv4Addr::LOCALHOST),
                IpAddr::from(Ipv6Addr::LOCALHOST),
            ]
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![ip]
        } else {
            return;
        };
        self.targets.push(Target {
            ips,
            port,
            span,
            url: url.to_owned(),
        });
    }

    /// Reports every region that points at one of this sidecar's own listeners: each request
    /// would come back in and be forwarded again, until sockets run out.
    pub(crate) fn check_targets(&self, d: &mut Diags<'_>) {
        for t in &self.targets {
            let own = self.claimed.iter().find(|c| {
                c.addr.port() == t.port
                    && t.ips.iter().any(|ip| {
                        *ip == c.addr.ip()
                            || (c.addr.ip().is_unspecified()
                                && (ip.is_loopback() || ip.is_unspecified()))
                    })
            });
            if let Some(own) = own {
                d.error(
                    &t.span,
                    format!(
                        "region url {:?} is this sidecar's own listener ({}: {}): requests would loop back into it",
                        t.url, own.owner, own.addr
                    ),
                );
            }
        }
    }
}

/// Same port and the same IP, or either side bound to every address.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_are_literal() {
        assert!(socket_addr("127.0.0.1:8080").is_ok());
        assert!(socket_addr("[::1]:8080").is_ok());
        for bad in [
            "localhost:8080",
            "127.0.0.1",
            ":8080",
            "127.0.0.1:99999",
            "example.com:80",
        ] {
            assert!(
                socket_addr(bad).unwrap_err().contains("expected IP:port"),
                "{bad}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(name("orders-v2.eu_1", "service").is_ok());
        assert_eq!(
            name("", "service").unwrap_err(),
            "service name must not be empty"
        );
        assert!(
            name("a b", "region")
                .unwrap_err()
                .starts_with("invalid region name \"a b\"")
        );
        assert!(name("a/b", "region").is_err());
    }

    #[test]
    fn region_urls() {
        let u = region_url("https://orders.example.com").unwrap();
        assert_eq!(u.scheme, Scheme::HTTPS);
        assert_eq!(u.authority.as_str(), "orders.example.com");
        assert_eq!(u.base_path, "");
        let u = region_url("http://127.0.0.1:9002/api/v1/").unwrap();
        assert_eq!(u.scheme, Scheme::HTTP);
        assert_eq!(u.authority.port_u16(), Some(9002));
        assert_eq!(u.base_path, "/api/v1");
        assert!(region_url("http://[::1]:80").is_ok());
        assert!(region_url("http://[::1]").is_ok());
        for (bad, why) in [
            ("ftp://x", "scheme"),
            ("example.com", "http://"),
            ("/just/a/path", "http://"),
            ("http://x/?a=1", "query"),
            ("http://x/#top", "fragment"),
            ("http://user:pw@x", "credentials"),
            ("http://x:99999", "port"),
            ("http://", "expected"),
            ("http://a b", "expected"),
        ] {
            let err = region_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            status_range("200-399"),
            Ok(StatusRange {
                low: 200,
                high: 399
            })
        );
        assert_eq!(
            status_range("204"),
            Ok(StatusRange {
                low: 204,
                high: 204
            })
        );
        assert!(status_range("399-200").unwrap_err().contains("reversed"));
        assert!(
            status_range("200-600")
                .unwrap_err()
                .contains("between 100 and 599")
        );
        assert!(
            status_range("99")
                .unwrap_err()
                .contains("between 100 and 599")
        );
        assert!(
            status_range("2xx")
                .unwrap_err()
                .contains("expected a status code")
        );
        assert!(status_range("").is_err());
    }

    #[test]
    fn clashing_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(clash(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(clash(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(clash(a("[::]:80"), a("127.0.0.1:80")));
        assert!(!clash(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!clash(a("127.0.0.1:80"), a("127.0.0.1:81")));
    }
}
