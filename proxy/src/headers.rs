//! Header rules for forwarding: hop-by-hop removal, `Host` rewrite, `X-Forwarded-*`.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_SWITCHYARD_REGION: HeaderName = HeaderName::from_static("x-switchyard-region");
pub const X_SWITCHYARD_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
pub const X_SWITCHYARD_DEGRADED: HeaderName = HeaderName::from_static("x-switchyard-degraded");
pub const X_SWITCHYARD_ERROR: HeaderName = HeaderName::from_static("x-switchyard-error");
/// The headers the sidecar sets on responses; a stored response is kept without them.
pub const SIDECAR_HEADERS: [HeaderName; 4] = [
    X_SWITCHYARD_REGION,
    X_SWITCHYARD_ATTEMPTS,
    X_SWITCHYARD_DEGRADED,
    X_SWITCHYARD_ERROR,
];
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The request's `Host`, if any, or why it makes the request invalid (RFC 9112 section 3.2:
/// an HTTP/1.1 request without one, any request with more than one, and any with an invalid
/// one get 400). Forwarding such a request would leave the region to guess which host was
/// meant, and hand an app that trusts `X-Forwarded-Host` whatever the client wrote there.
pub fn single_host(
    version: http::Version,
    headers: &HeaderMap,
) -> Result<Option<&HeaderValue>, &'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("multiple-host-headers"),
        (None, _) if version == http::Version::HTTP_11 => Err("missing-host-header"),
        (Some(host), _) if !valid_host(host.as_bytes()) => Err("invalid-host-header"),
        (host, _) => Ok(host),
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2; RFC 3986's reg-name, IPv4 or an IPv6
/// literal in brackets), or empty (a target without an authority). One pass over the bytes,
/// on every request: `http::uri::Authority` would copy the value into an allocation first.
fn valid_host(host: &[u8]) -> bool {
    let (name, port): (&[u8], &[u8]) = if host.first() == Some(&b'[') {
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &host[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &host[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[], port),
            _ => return false,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon + 1..]),
            None => (host, &[]),
        }
    };
    name.iter().all(|&b| is_reg_name_byte(b)) && port.iter().all(u8::is_ascii_digit)
}

/// RFC 3986 reg-name: unreserved, sub-delims, and `%` of percent-encoding. A table, since it
/// runs for every byte of every request's `Host`.
fn is_reg_name_byte(b: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            table[i] = b.is_ascii_alphanumeric();
            i += 1;
        }
        let extra = b"-._~%!$&'()*+,;=";
        let mut j = 0;
        while j < extra.len() {
            table[extra[j] as usize] = true;
            j += 1;
        }
        table
    };
    TABLE[usize::from(b)]
}

/// A region's response headers as they may go on: hop-by-hop headers removed, and the
/// sidecar's own [`SIDECAR_HEADERS`] too. `x-switchyard-degraded` means "the sidecar made this
/// answer" (clients and the degraded-responses metric read it), so a region cannot send it;
/// the others are set again for the response. A pass over the names first: nearly every
/// response has none of them.
///
/// A `Content-Length` that does not describe the body the client will get goes too: beside
/// `Transfer-Encoding` the body's length is the chunking's (RFC 9112 section 6.3 has a proxy
/// remove it), and a 204 has no body (h2 clients refuse the header on one).
pub fn clean_region_response(status: StatusCode, headers: &mut HeaderMap) {
    // One pass of cheap name comparisons decides what the response needs (usually nothing).
    let (mut sidecar, mut hop, mut chunked, mut length) = (false, false, false, false);
    for name in headers.keys() {
        sidecar |= SIDECAR_HEADERS.contains(name);
        hop |= maybe_hop_by_hop(name);
        chunked |= name == header::TRANSFER_ENCODING;
        length |= name == header::CONTENT_LENGTH;
    }
    if sidecar {
        for name in SIDECAR_HEADERS {
            headers.remove(name);
        }
    }
    if length && (chunked || status == StatusCode::NO_CONTENT) {
        headers.remove(header::CONTENT_LENGTH);
    }
    if hop {
        remove_hop_by_hop(headers, false);
    }
}

/// Headers that describe one connection and must not cross the proxy (RFC 9110 section 7.6.1).
/// `Trailer` is not one of them: it announces the trailer fields end to end, and hyper's
/// HTTP/1.1 server sends only the trailers it names (gRPC's `grpc-status`).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// True for an HTTP/1.1 upgrade request (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// True for a header that [`strip_hop_by_hop`] may remove.
fn maybe_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::TE
}

/// Removes hop-by-hop headers, including every header named in `Connection`. An upgrade keeps
/// `Connection: upgrade` and `Upgrade`, which the next hop needs to switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them: one pass of cheap name comparisons instead of a hash
    // lookup per hop-by-hop name (every request and response goes through here).
    if upgrade || headers.keys().any(maybe_hop_by_hop) {
        remove_hop_by_hop(headers, upgrade);
    }
}

/// [`strip_hop_by_hop`] once a hop-by-hop name was seen.
fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // `Connection: keep-alive` or `close`, as nearly every region sends, names nothing that
    // is not removed below anyway: no list to build.
    let names_others = headers.get_all(header::CONNECTION).iter().any(|v| {
        !v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
            && !v.as_bytes().eq_ignore_ascii_case(b"close")
    });
    let named: Vec<HeaderName> = if names_others {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && *n == header::UPGRADE))
            .collect()
    } else {
        Vec::new()
    };
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        if !(upgrade && *name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    // `TE: trailers` is end-to-end in practice (gRPC needs it); any other TE is hop-by-hop.
    if headers
        .get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Appends `value` to a comma-separated list header, folding existing lines into one.
fn append_list(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
        return;
    }
    let Ok(value) = value.to_str() else {
        return;
    };
    let mut joined = String::new();
    for v in headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        joined.push_str(v);
        joined.push_str(", ");
    }
    joined.push_str(value);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// Adds the `X-Forwarded-*` headers for a request arriving from `client` (its address as a
/// header value, see `ConnInfo`) over `proto`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    original_host: Option<HeaderValue>,
    client: HeaderValue,
    proto: &'static str,
) {
    append_list(headers, X_FORWARDED_FOR, client);
    append_list(headers, X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_cannot_send_the_sidecars_markers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(X_SWITCHYARD_DEGRADED, HeaderValue::from_static("1"));
        h.insert(X_SWITCHYARD_ERROR, HeaderValue::from_static("spoofed"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        clean_region_response(StatusCode::OK, &mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn a_content_length_that_does_not_describe_the_body_is_dropped() {
        let with = |names: &[HeaderName]| {
            let mut h = HeaderMap::new();
            for name in names {
                h.insert(name, HeaderValue::from_static("5"));
            }
            h
        };
        let cl = header::CONTENT_LENGTH;
        let mut both = with(&[header::CONTENT_LENGTH, header::TRANSFER_ENCODING]);
        clean_region_response(StatusCode::OK, &mut both);
        assert!(both.is_empty(), "{both:?}");
        let mut no_content = with(&[header::CONTENT_LENGTH]);
        clean_region_response(StatusCode::NO_CONTENT, &mut no_content);
        assert!(no_content.is_empty(), "{no_content:?}");
        for status in [StatusCode::OK, StatusCode::NOT_MODIFIED] {
            let mut kept = with(&[header::CONTENT_LENGTH]);
            clean_region_response(status, &mut kept);
            assert!(kept.contains_key(&cl), "{status}");
        }
    }

    #[test]
    fn host_must_be_present_once_in_http11_and_at_most_once_otherwise() {
        let with = |hosts: &[&str]| {
            let mut h = HeaderMap::new();
            for host in hosts {
                h.append(header::HOST, HeaderValue::from_str(host).expect("value"));
            }
            h
        };
        let v11 = http::Version::HTTP_11;
        let one = with(&["a"]);
        assert_eq!(single_host(v11, &one), Ok(one.get(header::HOST)));
        assert_eq!(single_host(v11, &with(&[])), Err("missing-host-header"));
        assert_eq!(
            single_host(v11, &with(&["a", "b"])),
            Err("multiple-host-headers")
        );
        assert_eq!(single_host(http::Version::HTTP_10, &with(&[])), Ok(None));
        assert_eq!(single_host(http::Version::HTTP_2, &with(&[])), Ok(None));
        assert_eq!(
            single_host(http::Version::HTTP_2, &with(&["a", "a"])),
            Err("multiple-host-headers")
        );
        for good in [
            "",
            "orders.example.com",
            "127.0.0.1:8080",
            "[::1]:80",
            "xn--bcher-kva.de",
        ] {
            assert!(single_host(v11, &with(&[good])).is_ok(), "{good:?}");
        }
        for bad in [
            "a/b",
            "a@b",
            "a b",
            "a?b",
            "a#b",
            "host:port",
            "[::1",
            "[::1]x",
            "a:b:80",
            "[]",
        ] {
            assert_eq!(
                single_host(v11, &with(&[bad])),
                Err("invalid-host-header"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn plain_keep_alive_and_close_are_removed_with_their_fellows() {
        for value in ["keep-alive", "Close"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static(value));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            h.insert("x-app", HeaderValue::from_static("kept"));
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{value}: {h:?}");
            assert!(h.contains_key("x-app"));
        }
    }

    #[test]
    fn upgrade_keeps_what_the_next_hop_needs() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        let host = HeaderValue::from_static("app.local");
        add_forwarded(
            &mut h,
            Some(host),
            HeaderValue::from_static("127.0.0.1"),
            "http",
        );
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "app.local");
    }
}
