//! WebSocket echo: answer the HTTP/1.1 upgrade with 101, then echo every message back.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::conn::ConnCtx;
use super::handler::RespBody;

/// How long the client may take to start using the upgraded connection.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// An echo session idle this long ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages one echo session answers at most.
const MAX_MESSAGES: usize = 1_000_000;

pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers 101 and runs the echo on the upgraded socket in the region's task set.
pub(crate) fn upgrade(mut req: Request<Incoming>, ctx: &Arc<ConnCtx>) -> Response<RespBody> {
    let empty = || Empty::new().map_err(|never| match never {}).boxed();
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    ctx.generation.spawn(async move {
        if let Ok(Ok(upgraded)) = tokio::time::timeout(UPGRADE_TIMEOUT, on_upgrade).await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            echo(ws).await;
        }
    });
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    resp
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for _ in 0..MAX_MESSAGES {
        let msg = match tokio::time::timeout(IDLE_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(msg))) => msg,
            _ => return,
        };
        let sent = match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg).await,
            // tungstenite queued the pong or the close reply; flushing sends it.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => ws.flush().await,
            Message::Close(_) => {
                let _ = ws.flush().await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
