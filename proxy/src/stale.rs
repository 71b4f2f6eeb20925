//! The stale-if-error cache: the last good GET responses, served when no region can answer.
//!
//! Only responses a shared cache may keep, and may serve stale, are stored: a complete 200
//! to a request without `Range`; no
//! `no-store` or `private`; none that must be revalidated before reuse (`no-cache`,
//! `must-revalidate`, `proxy-revalidate`, `s-maxage`: RFC 9111 forbids serving those stale,
//! and wants a 504 instead); no `Set-Cookie`; nothing answered to a request with credentials
//! (`Authorization`, `Cookie`) unless marked `public`; never `Vary: *`. Each is kept under its
//! path and the request values of the headers it varies on, and answers GET and HEAD.
//! Memory is bounded: entries over a size limit are not kept and the least recently used are
//! evicted first. The cache is touched only when `stale_if_error` is on, and only once per
//! stored response and per failed request, never for healthy traffic otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use lru::LruCache;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::headers::{X_SWITCHYARD_DEGRADED, X_SWITCHYARD_ERROR};

/// All entries together, headers and bodies.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// One response body; larger ones stream through uncached.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Variants (different `Vary` values) kept per path.
const MAX_VARIANTS: usize = 8;
/// Expired paths dropped from the cold end per store, at most (see `store`).
const EXPIRE_PER_STORE: usize = 4;

pub struct StaleEntry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored_at: Instant,
    /// The response's age when it was stored (its `Age` header: time spent in caches before
    /// the region's answer reached us).
    age_at_store: Duration,
}

struct Variant {
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    entry: Arc<StaleEntry>,
}

struct Inner {
    map: LruCache<String, Vec<Variant>>,
    bytes: usize,
}

impl Inner {
    /// Drops the least recently used path; false when there is none.
    fn evict_lru(&mut self) -> bool {
        let Some((key, evicted)) = self.map.pop_lru() else {
            return false;
        };
        let gone: usize = evicted.iter().map(|v| entry_size(&v.entry, &key)).sum();
        self.bytes = self.bytes.saturating_sub(gone);
        true
    }
}

impl StaleEntry {
    /// RFC 9111 §4.2.3: the age it had when stored plus the time it has been here.
    fn age(&self) -> Duration {
        self.age_at_store + self.stored_at.elapsed()
    }
}

pub struct StaleCache {
    max_age: Duration,
    inner: Mutex<Inner>,
}

/// `Authorization` or a `Cookie`: the response may be personal, and one sidecar serves every
/// user of its app instance, so it is kept only when the region marks it `public`.
fn has_credentials(req: &HeaderMap) -> bool {
    req.contains_key(header::AUTHORIZATION) || req.contains_key(header::COOKIE)
}

/// Response directives that forbid serving the response stale (RFC 9111 §4.2.4).
const REVALIDATE: [&str; 4] = [
    "no-cache",
    "must-revalidate",
    "proxy-revalidate",
    "s-maxage",
];

fn cache_control_has(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            let d = d.trim();
            d.eq_ignore_ascii_case(directive)
                || d.split('=')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(directive))
        })
}

/// An `Age` value in seconds; one too large to represent is as old as can be (RFC 9111
/// §1.2.2), not unknown. Anything but digits is no `Age`.
fn age_secs(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(std::str::from_utf8(value).ok()?.parse().unwrap_or(u64::MAX))
}

fn vary_names(resp_headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for v in resp_headers.get_all(header::VARY) {
        for name in v.to_str().ok()?.split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            names.push(HeaderName::from_bytes(name.as_bytes()).ok()?);
        }
    }
    Some(names)
}

fn vary_values(names: &[HeaderName], req: &HeaderMap) -> Vec<(HeaderName, Option<HeaderValue>)> {
    names
        .iter()
        .map(|n| (n.clone(), req.get(n).cloned()))
        .collect()
}

/// Memory an entry holds, counted generously: its bytes plus what the containers around
/// them cost (a header map slot and index per header; the entry, its variant, the LRU node
/// and the key's allocation). Counting only the bytes undercounted a small response about
/// threefold, and `MAX_BYTES` is a promise about resident memory.
fn entry_size(entry: &StaleEntry, key: &str) -> usize {
    const PER_HEADER: usize = 96;
    const PER_ENTRY: usize = 512;
    let headers: usize = entry
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + PER_HEADER)
        .sum();
    key.len() + headers + entry.body.len() + PER_ENTRY
}

/// The headers with each value in an allocation of its own. A region's header values are
/// slices of the connection's read buffer, and a slice keeps the whole buffer alive: stored
/// as they came, every entry pinned some 5 KiB (measured: 20,000 distinct small GETs grew the
/// sidecar by 107 MB), so the cache's memory had nothing to do with what it counted.
fn compact(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

impl StaleCache {
    pub fn new(max_age: Duration) -> Self {
        StaleCache {
            max_age,
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// A cache for the service that replaces the owner of `old` at a reload, with `old`'s
    /// entries: operators reload during outages, which is when the copies are served. Entries
    /// older than the new `max_age` are not served; responses the old service stores after
    /// this are not carried.
    pub fn take_over(old: &StaleCache, max_age: Duration) -> Self {
        let taken = old.inner.lock().map(|mut inner| Inner {
            map: std::mem::replace(&mut inner.map, LruCache::unbounded()),
            bytes: std::mem::take(&mut inner.bytes),
        });
        StaleCache {
            max_age,
            inner: Mutex::new(taken.unwrap_or(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
            })),
        }
    }

    /// Whether a response to this request may be stored (decided before its body streams).
    pub fn should_store(
        method: &Method,
        req: &HeaderMap,
        status: StatusCode,
        resp: &HeaderMap,
    ) -> bool {
        *method == Method::GET
            // Only a complete representation: a 206 answers one Range, and a 203 or 204 is
            // not what a plain GET for the path would get again.
            && status == StatusCode::OK
            && !req.contains_key(header::RANGE)
            && !cache_control_has(resp, "no-store")
            && !cache_control_has(resp, "private")
            && !REVALIDATE.iter().any(|d| cache_control_has(resp, d))
            && !cache_control_has(req, "no-store")
            && !resp.contains_key(header::SET_COOKIE)
            && (!has_credentials(req) || cache_control_has(resp, "public"))
            && vary_names(resp).is_some()
            && resp
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .is_none_or(|len| len <= MAX_ENTRY_BYTES)
    }

    /// Stores a complete response (called when its body finished streaming).
    pub fn store(
        &self,
        path: String,
        req: &HeaderMap,
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
    ) {
        let Some(names) = vary_names(&headers) else {
            return;
        };
        for name in crate::headers::SIDECAR_HEADERS {
            headers.remove(name);
        }
        let age_at_store = headers
            .get(header::AGE)
            .and_then(|v| age_secs(v.as_bytes()))
            .map_or(Duration::ZERO, Duration::from_secs);
        if age_at_store > self.max_age {
            return;
        }
        // Kept for minutes, so in an allocation of its own and exactly its size: as captured,
        // a body may be a slice of a larger read buffer or a buffer grown by doubling
        // (black-box round 8: 31 MiB of 1 MiB copies held 85-100 MB).
        let body = Bytes::copy_from_slice(&body);
        let entry = Arc::new(StaleEntry {
            status,
            headers: compact(&headers),
            body,
            stored_at: Instant::now(),
            age_at_store,
        });
        let size = entry_size(&entry, &path);
        if size > MAX_ENTRY_BYTES + 64 * 1024 {
            return;
        }
        let vary = vary_values(&names, req);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut freed = 0;
        let variants = inner.map.get_or_insert_mut(path.clone(), Vec::new);
        if let Some(i) = variants.iter().position(|v| v.vary == vary) {
            freed += entry_size(&variants[i].entry, &path);
            variants[i].entry = entry;
        } else {
            if variants.len() >= MAX_VARIANTS {
                freed += entry_size(&variants.remove(0).entry, &path);
            }
            variants.push(Variant { vary, entry });
        }
        inner.bytes = inner.bytes.saturating_sub(freed) + size;
        while inner.bytes > MAX_BYTES {
            if !inner.evict_lru() {
                break;
            }
        }
        // Entries past `stale_if_error` are never served again: a few at the cold end go with
        // each store, so a cache of many distinct paths holds what is young, not MAX_BYTES of
        // what once was.
        for _ in 0..EXPIRE_PER_STORE {
            let expired = inner
                .map
                .peek_lru()
                .is_some_and(|(_, variants)| variants.iter().all(|v| v.entry.age() > self.max_age));
            if !expired || !inner.evict_lru() {
                break;
            }
        }
    }

    /// The stored answer for this request, if one is young enough.
    pub fn lookup(&self, path: &str, req: &HeaderMap) -> Option<Response<ProxyBody>> {
        let entry = {
            let mut inner = self.inner.lock().ok()?;
            let variants = inner.map.get(path)?;
            variants
                .iter()
                .find(|v| {
                    let names: Vec<HeaderName> = v.vary.iter().map(|(n, _)| n.clone()).collect();
                    vary_values(&names, req) == v.vary
                })?
                .entry
                .clone()
        };
        let age = entry.age();
        if age > self.max_age {
            return None;
        }
        let mut resp = Response::new(ProxyBody::full(entry.body.clone()));
        *resp.status_mut() = entry.status;
        *resp.headers_mut() = entry.headers.clone();
        let h = resp.headers_mut();
        h.insert(header::AGE, HeaderValue::from(age.as_secs()));
        h.insert(X_SWITCHYARD_DEGRADED, HeaderValue::from_static("1"));
        h.insert(X_SWITCHYARD_ERROR, HeaderValue::from_static("stale"));
        Some(resp)
    }

    /// Forgets every variant stored for `path`: an unsafe request to it succeeded, so the
    /// copy may no longer be what the region holds (RFC 9111 §4.4). A client must not get its
    /// deleted or overwritten data back from the sidecar in the next outage.
    pub fn invalidate(&self, path: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(variants) = inner.map.pop(path) {
            let gone: usize = variants.iter().map(|v| entry_size(&v.entry, path)).sum();
            inner.bytes = inner.bytes.saturating_sub(gone);
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_shareable_successful_gets_are_stored() {
        let ok = StatusCode::OK;
        let none = HeaderMap::new();
        assert!(StaleCache::should_store(&Method::GET, &none, ok, &none));
        assert!(!StaleCache::should_store(&Method::POST, &none, ok, &none));
        for status in [
            StatusCode::NOT_FOUND,
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NO_CONTENT,
        ] {
            assert!(
                !StaleCache::should_store(&Method::GET, &none, status, &none),
                "{status}"
            );
        }
        let range = headers(&[("range", "bytes=0-4")]);
        assert!(!StaleCache::should_store(&Method::GET, &range, ok, &none));
        for cc in [
            "no-store",
            "private",
            "max-age=0, no-store",
            "private=\"x\"",
            "no-cache",
            "max-age=60, must-revalidate",
            "proxy-revalidate",
            "public, s-maxage=60",
        ] {
            let resp = headers(&[("cache-control", cc)]);
            assert!(
                !StaleCache::should_store(&Method::GET, &none, ok, &resp),
                "{cc}"
            );
        }
        assert!(!StaleCache::should_store(
            &Method::GET,
            &none,
            ok,
            &headers(&[("vary", "*")])
        ));
        assert!(!StaleCache::should_store(
            &Method::GET,
            &none,
            ok,
            &headers(&[("set-cookie", "a=b")])
        ));
        for credentials in [("authorization", "Bearer x"), ("cookie", "session=a")] {
            let req = headers(&[credentials]);
            assert!(!StaleCache::should_store(&Method::GET, &req, ok, &none));
            assert!(StaleCache::should_store(
                &Method::GET,
                &req,
                ok,
                &headers(&[("cache-control", "public")])
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_vary_expire_and_are_marked() {
        let cache = StaleCache::new(Duration::from_secs(60));
        let resp = headers(&[("vary", "accept-language"), ("content-type", "text/plain")]);
        let en = headers(&[("accept-language", "en")]);
        let fr = headers(&[("accept-language", "fr")]);
        cache.store(
            "/p".into(),
            &en,
            StatusCode::OK,
            resp.clone(),
            Bytes::from_static(b"hello"),
        );
        cache.store(
            "/p".into(),
            &fr,
            StatusCode::OK,
            resp,
            Bytes::from_static(b"bonjour"),
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let hit = cache.lookup("/p", &fr).expect("fr variant");
        assert_eq!(hit.headers()["age"], "5");
        assert_eq!(hit.headers()["x-switchyard-degraded"], "1");
        assert!(matches!(hit.body(), ProxyBody::Full(Some(b)) if b == "bonjour"));
        assert!(
            cache
                .lookup("/p", &headers(&[("accept-language", "de")]))
                .is_none()
        );
        assert!(cache.lookup("/other", &en).is_none());
        tokio::time::advance(Duration::from_secs(56)).await;
        assert!(
            cache.lookup("/p", &en).is_none(),
            "older than stale_if_error"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn age_counts_from_the_regions_age_header() {
        let cache = StaleCache::new(Duration::from_secs(60));
        let none = HeaderMap::new();
        cache.store(
            "/aged".into(),
            &none,
            StatusCode::OK,
            headers(&[("age", "50")]),
            Bytes::from_static(b"x"),
        );
        cache.store(
            "/old".into(),
            &none,
            StatusCode::OK,
            headers(&[("age", "3600")]),
            Bytes::from_static(b"x"),
        );
        cache.store(
            "/ancient".into(),
            &none,
            StatusCode::OK,
            headers(&[("age", "99999999999999999999999")]),
            Bytes::from_static(b"x"),
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let hit = cache.lookup("/aged", &none).expect("young enough");
        assert_eq!(hit.headers()["age"], "55");
        assert!(
            cache.lookup("/old", &none).is_none(),
            "older than stale_if_error"
        );
        assert!(
            cache.lookup("/ancient", &none).is_none(),
            "an Age too large to represent is old, not unknown"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(cache.lookup("/aged", &none).is_none(), "61 s old in all");
    }

    #[test]
    fn invalidation_forgets_every_variant_of_a_path() {
        let cache = StaleCache::new(Duration::from_secs(60));
        let resp = headers(&[("vary", "accept-language")]);
        for lang in ["en", "fr"] {
            let req = headers(&[("accept-language", lang)]);
            cache.store(
                "/item".into(),
                &req,
                StatusCode::OK,
                resp.clone(),
                Bytes::from_static(b"x"),
            );
        }
        cache.store(
            "/other".into(),
            &HeaderMap::new(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"y"),
        );
        let before = cache.bytes();
        cache.invalidate("/item");
        assert!(
            cache
                .lookup("/item", &headers(&[("accept-language", "en")]))
                .is_none()
        );
        assert!(
            cache
                .lookup("/item", &headers(&[("accept-language", "fr")]))
                .is_none()
        );
        assert!(cache.lookup("/other", &HeaderMap::new()).is_some());
        assert!(cache.bytes() < before);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_paths_leave_as_new_ones_are_stored() {
        let cache = StaleCache::new(Duration::from_secs(10));
        let none = HeaderMap::new();
        let body = Bytes::from_static(b"x");
        for i in 0..3 {
            cache.store(
                format!("/old/{i}"),
                &none,
                StatusCode::OK,
                none.clone(),
                body.clone(),
            );
        }
        let three = cache.bytes();
        tokio::time::advance(Duration::from_secs(11)).await;
        cache.store(
            "/new".into(),
            &none,
            StatusCode::OK,
            none.clone(),
            body.clone(),
        );
        assert!(cache.lookup("/new", &none).is_some());
        assert!(
            cache.bytes() < three,
            "the three expired paths were dropped: {} bytes left of {three}",
            cache.bytes()
        );
    }

    /// A region's header values are slices of the connection's read buffer; a stored copy
    /// must not keep that buffer alive.
    #[test]
    fn stored_copies_do_not_pin_the_buffer_they_were_read_from() {
        let cache = StaleCache::new(Duration::from_secs(60));
        let read_buffer = Bytes::from(vec![b'a'; 8192]);
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_maybe_shared(read_buffer.slice(0..16)).expect("value");
        headers.insert("x-from-region", value);
        let none = HeaderMap::new();
        let body = read_buffer.slice(100..200);
        cache.store("/p".into(), &none, StatusCode::OK, headers, body);
        let hit = cache.lookup("/p", &none).expect("stored");
        let buffer = read_buffer.as_ptr_range();
        let outside = |stored: std::ops::Range<*const u8>| {
            stored.end <= buffer.start || stored.start >= buffer.end
        };
        assert!(
            outside(hit.headers()["x-from-region"].as_bytes().as_ptr_range()),
            "the stored header value is a copy, not a slice of the read buffer"
        );
        let ProxyBody::Full(Some(stored_body)) = hit.body() else {
            panic!("a full body")
        };
        assert_eq!(stored_body.len(), 100);
        assert!(
            outside(stored_body.as_ptr_range()),
            "the stored body is a copy, not a slice of the read buffer"
        );
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_least_recently_used() {
        let cache = StaleCache::new(Duration::from_secs(60));
        let body = Bytes::from(vec![b'x'; MAX_ENTRY_BYTES - 1024]);
        for i in 0..64 {
            cache.store(
                format!("/{i}"),
                &HeaderMap::new(),
                StatusCode::OK,
                HeaderMap::new(),
                body.clone(),
            );
        }
        assert!(cache.bytes() <= MAX_BYTES);
        assert!(
            cache.lookup("/0", &HeaderMap::new()).is_none(),
            "oldest evicted"
        );
        assert!(cache.lookup("/63", &HeaderMap::new()).is_some());
    }
}
