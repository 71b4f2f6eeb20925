//! Test clients: HTTP/1.1, h2c and HTTPS on hyper-util's pooled client, plus raw TCP requests.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::fake_region::{BoxError, sha256_hex};
use crate::pki::TestPki;

/// Request body type of the test clients.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Default bound on one request, head and body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which HTTP version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: prior knowledge (h2c) in cleartext, ALPN `h2` over TLS.
    H2,
    /// Over TLS, offer ALPN `h2` and `http/1.1` and use what the server picks;
    /// in cleartext, HTTP/1.1.
    Auto,
}

/// A response read to its end.
#[derive(Clone, Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl TestResponse {
    /// The header's value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {}", self.text()))
    }

    /// Hex SHA-256 of the body.
    pub fn body_sha256(&self) -> String {
        sha256_hex(&self.body)
    }

    /// `x-switchyard-region`: the region the proxy says answered.
    pub fn region(&self) -> Option<&str> {
        self.header("x-switchyard-region")
    }

    /// `x-fake-region`: the fake region that actually answered.
    pub fn fake_region(&self) -> Option<&str> {
        self.header("x-fake-region")
    }
}

/// A pooled client with a per-request timeout.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, TestBody>,
    timeout: Duration,
}

impl HttpClient {
    /// A client for `protocol`; with `pki`, HTTPS trusting only its CA, presenting the
    /// client certificate when `client_cert`. Plain `http://` URLs work with every client.
    pub fn new(protocol: Protocol, pki: Option<&TestPki>, client_cert: bool) -> Self {
        let tls = match pki {
            Some(pki) => pki.client_config(client_cert).expect("TLS client config"),
            None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = match protocol {
            Protocol::Http1 => builder.enable_http1().wrap_connector(http),
            Protocol::H2 => builder.enable_http2().wrap_connector(http),
            Protocol::Auto => builder.enable_all_versions().wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(protocol == Protocol::H2)
            .build(connector);
        Self {
            client,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds each request (head and body) by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn get(&self, url: &str) -> Result<TestResponse> {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<TestResponse> {
        self.request(Method::GET, url, headers, Bytes::new()).await
    }

    pub async fn post(
        &self,
        url: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<TestResponse> {
        self.request(Method::POST, url, headers, body).await
    }

    /// Any method, extra headers and a body (empty: no body).
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<TestResponse> {
        let body = body.into();
        let body = if body.is_empty() { empty() } else { full(body) };
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(body)?).await
    }

    /// Sends `req` and reads the whole response, all within the client's timeout.
    pub async fn send(&self, req: Request<TestBody>) -> Result<TestResponse> {
        let what = format!("{} {}", req.method(), req.uri());
        let exchange = async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let collected = body.collect().await?;
            let trailers = collected.trailers().cloned();
            Ok::<_, anyhow::Error>(TestResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{what}: no complete response within {:?}", self.timeout))?
            .with_context(|| what)
    }

    /// Sends `req` and returns once the response head arrived; the body is left to stream.
    pub async fn send_streaming(&self, req: Request<TestBody>) -> Result<Response<Incoming>> {
        let what = format!("{} {}", req.method(), req.uri());
        tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| anyhow!("{what}: no response head within {:?}", self.timeout))?
            .with_context(|| what)
    }
}

/// HTTP/1.1 client.
pub fn http1_client() -> HttpClient {
    HttpClient::new(Protocol::Http1, None, false)
}

/// HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> HttpClient {
    HttpClient::new(Protocol::H2, None, false)
}

/// HTTPS client trusting the PKI's CA, offering ALPN h2 and http/1.1.
pub fn https_client(pki: &TestPki) -> HttpClient {
    HttpClient::new(Protocol::Auto, Some(pki), false)
}

/// HTTPS client trusting the PKI's CA and presenting its client certificate.
pub fn mtls_client(pki: &TestPki) -> HttpClient {
    HttpClient::new(Protocol::Auto, Some(pki), true)
}

/// GET with a fresh HTTP/1.1 client.
pub async fn get(url: &str) -> Result<TestResponse> {
    http1_client().get(url).await
}

/// POST with a fresh HTTP/1.1 client.
pub async fn post(
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Result<TestResponse> {
    http1_client().post(url, body, headers).await
}

/// A request body of these bytes.
pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty request body.
pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A streaming request body fed by the returned sender; dropping the sender ends the body.
/// Lets a test stall an upload or send it in timed pieces.
pub fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let frames = stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(frames).boxed())
}

/// Default bound of [`raw_http`].
pub const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `request` as-is to `addr` and returns what came back (lossy UTF-8), stopping at
/// the end of the first complete response, at EOF, or after [`RAW_TIMEOUT`].
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> Result<String> {
    raw_http_timeout(addr, request, RAW_TIMEOUT).await
}

/// [`raw_http`] with an explicit bound.
pub async fn raw_http_timeout(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<String> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connect to {addr} timed out"))?
        .with_context(|| format!("connect to {addr}"))?;
    let head_request = request.starts_with(b"HEAD ");
    let mut buf = Vec::new();
    let exchange = async {
        stream.write_all(request).await?;
        let mut chunk = [0u8; 16 * 1024];
        // Ends at EOF or a complete response; the timeout bounds a server that does neither.
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if response_complete(&buf, head_request) {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    // A timeout or a reset still returns what arrived: that is the observation.
    let _ = tokio::time::timeout(timeout, exchange).await;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads from a connection the test keeps (to send more on it) until `done` holds for what
/// arrived, the peer closes, or `timeout` passes; returns what arrived, lowercased.
pub async fn read_until(
    conn: &mut TcpStream,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while !done(&String::from_utf8_lossy(&buf).to_ascii_lowercase()) {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

/// Whether `buf` holds one whole HTTP/1.x response (by status, Content-Length or chunking).
fn response_complete(buf: &[u8], head_request: bool) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body = &buf[head_end + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return true;
    }
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}
