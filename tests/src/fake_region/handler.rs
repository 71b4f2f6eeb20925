//! One request to a fake region: count it, then answer according to the mode and the path.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::body::{
    BoxError, CutBody, DripBody, HashingBody, LateEndBody, PatternBody, TrailersBody,
};
use super::conn::ConnCtx;
use super::state::Mode;
use super::websocket;

/// Response body of the fake region.
pub(crate) type RespBody = BoxBody<Bytes, BoxError>;

/// A request body slower than this to arrive is abandoned with 408.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `Blackhole` and `CloseAfterRequest` keep a request hanging: longer than any test.
const HANG: Duration = Duration::from_secs(3600);

/// What the response headers echo back about the request head.
struct Seen {
    method: String,
    path: String,
    host: Option<String>,
    version: Version,
}

impl Seen {
    fn of<B>(req: &Request<B>) -> Self {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        Self {
            method: req.method().as_str().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
            host,
            version: req.version(),
        }
    }
}

/// Length and hex SHA-256 of a request body that was read to its end.
type Digested = (u64, String);

pub(crate) async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
) -> Result<Response<RespBody>, Infallible> {
    let shared = &ctx.shared;
    let control = shared.control();
    let is_health = req.uri().path() == shared.health_path;
    let seq = if is_health {
        shared.count_health_check();
        None
    } else {
        Some(shared.record(&req, ctx.peer))
    };
    let seen = Seen::of(&req);
    let health = |default: u16| control.health_status.unwrap_or(default);

    let (mut resp, digest) = match control.mode {
        Mode::Blackhole => {
            let _ = drain(req, &ctx, seq).await;
            tokio::time::sleep(HANG).await;
            (plain(StatusCode::GATEWAY_TIMEOUT, Bytes::new()), None)
        }
        Mode::CloseAfterRequest => {
            let _ = drain(req, &ctx, seq).await;
            ctx.drop_connection.notify_one();
            tokio::time::sleep(HANG).await;
            (plain(StatusCode::GATEWAY_TIMEOUT, Bytes::new()), None)
        }
        Mode::Status(code) => {
            let code = if is_health { health(code) } else { code };
            let digest = drain(req, &ctx, seq).await.unwrap_or(None);
            (plain(status(code), shared.body.clone()), digest)
        }
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            serve_ok(req, &ctx, seq, is_health.then(|| health(200))).await
        }
        Mode::Ok | Mode::Killed => serve_ok(req, &ctx, seq, is_health.then(|| health(200))).await,
    };
    decorate(&mut resp, &ctx, &seen, digest);
    Ok(resp)
}

/// `Ok` mode: health path, WebSocket, `/echo`, `/drip/N/MS`, `/trailers`, `/trailers-cl`, `/cut`,
/// `/late-end`, `/late-answer/MS`, `/bytes/N`, or the configured body.
async fn serve_ok(
    req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    seq: Option<u64>,
    health_status: Option<u16>,
) -> (Response<RespBody>, Option<Digested>) {
    let shared = &ctx.shared;
    if let Some(code) = health_status {
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        return (plain(status(code), Bytes::from_static(b"ok")), digest);
    }
    if websocket::is_upgrade(&req) {
        return (websocket::upgrade(req, ctx), None);
    }
    let path = req.uri().path().to_owned();
    if path == "/echo" {
        let shared = shared.clone();
        let body = HashingBody::new(req.into_body(), move |len, sha| {
            if let Some(seq) = seq {
                shared.record_body(seq, len, sha);
            }
        });
        let mut resp = Response::new(body.boxed());
        *resp.status_mut() = StatusCode::OK;
        return (resp, None);
    }
    if let Some((count, every)) = path
        .strip_prefix("/drip/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(n, ms)| Some((n.parse::<u32>().ok()?, ms.parse::<u64>().ok()?)))
    {
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        let body = DripBody::new(count, Duration::from_millis(every));
        return (Response::new(body.boxed()), digest);
    }
    if let Some(ms) = path
        .strip_prefix("/late-answer/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        return (late_answer(req, Duration::from_millis(ms)), None);
    }
    if path == "/late-end" {
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        return (Response::new(LateEndBody::default().boxed()), digest);
    }
    if path == "/cut" {
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        return (Response::new(CutBody::default().boxed()), digest);
    }
    if path == "/trailers" || path == "/trailers-cl" {
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        let body = if path == "/trailers" {
            TrailersBody::new()
        } else {
            TrailersBody::declared()
        };
        let mut resp = Response::new(body.boxed());
        resp.headers_mut().insert(
            http::header::TRAILER,
            HeaderValue::from_static("grpc-status, grpc-message"),
        );
        return (resp, digest);
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let Ok(n) = n.parse::<u64>() else {
            let digest = drain(req, ctx, seq).await.unwrap_or(None);
            let msg = Bytes::from_static(b"/bytes/N needs a number\n");
            return (plain(StatusCode::BAD_REQUEST, msg), digest);
        };
        let digest = drain(req, ctx, seq).await.unwrap_or(None);
        let mut resp = Response::new(PatternBody::new(n).boxed());
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return (resp, digest);
    }
    match drain(req, ctx, seq).await {
        Ok(digest) => (plain(StatusCode::OK, shared.body.clone()), digest),
        Err(BodyLost) => (plain(StatusCode::REQUEST_TIMEOUT, Bytes::new()), None),
    }
}

/// `/late-answer/MS`: the head at once, then one [`crate::DRIP_LINE`] MS ms after the request
/// body has ended (a server that answers a streamed request once it has all of it).
fn late_answer(req: Request<Incoming>, after: Duration) -> Response<RespBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let mut body = req.into_body();
    tokio::spawn(async move {
        let read = async { while let Some(Ok(_)) = body.frame().await {} };
        if tokio::time::timeout(BODY_READ_TIMEOUT, read).await.is_ok() {
            tokio::time::sleep(after).await;
            let _ = tx.send(Bytes::from_static(super::body::DRIP_LINE)).await;
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, BoxError>(http_body::Frame::data(line)), rx))
    });
    Response::new(http_body_util::StreamBody::new(frames).boxed())
}

/// The request body broke off or took longer than [`BODY_READ_TIMEOUT`].
struct BodyLost;

/// Reads the request body to its end, hashing as it streams, and logs the digest.
/// `Ok(None)` for a request without a body.
async fn drain(
    req: Request<Incoming>,
    ctx: &ConnCtx,
    seq: Option<u64>,
) -> Result<Option<Digested>, BodyLost> {
    let declared =
        req.headers().contains_key(CONTENT_LENGTH) || req.headers().contains_key(TRANSFER_ENCODING);
    let mut body = req.into_body();
    let read = async {
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        // Ends with the body: each frame is progress, and the whole read is under a timeout.
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
                len += data.len() as u64;
            }
        }
        Some((len, format!("{:x}", hasher.finalize())))
    };
    let (len, sha) = tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .ok()
        .flatten()
        .ok_or(BodyLost)?;
    if let Some(seq) = seq {
        ctx.shared.record_body(seq, len, sha.clone());
    }
    // Only requests that carried a body get the digest headers.
    Ok((len > 0 || declared).then_some((len, sha)))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn plain(status: StatusCode, body: Bytes) -> Response<RespBody> {
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        Full::new(body).map_err(|never| match never {}).boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if !no_body {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

/// Adds the `x-fake-*` headers that tell a test what the region saw.
fn decorate(resp: &mut Response<RespBody>, ctx: &ConnCtx, seen: &Seen, digest: Option<Digested>) {
    let shared = &ctx.shared;
    let version = format!("{:?}", seen.version);
    let scheme = if shared.tls { "https" } else { "http" };
    let mut pairs: Vec<(&'static str, String)> = vec![
        ("x-fake-region", shared.name.clone()),
        ("x-fake-method", seen.method.clone()),
        ("x-fake-path", seen.path.clone()),
        ("x-fake-version", version),
        ("x-fake-scheme", scheme.to_owned()),
    ];
    if let Some(host) = &seen.host {
        pairs.push(("x-fake-host", host.clone()));
    }
    if let Some((len, sha)) = digest {
        pairs.push(("x-fake-body-len", len.to_string()));
        pairs.push(("x-fake-body-sha256", sha));
    }
    let headers = resp.headers_mut();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    for (name, value) in &shared.extra_headers {
        headers.append(name.clone(), value.clone());
    }
}
