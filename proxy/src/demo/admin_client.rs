//! Calls to the sidecar's real admin API, each printed as the `curl` a user would type.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::report::Style;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub struct AdminClient {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    style: Style,
}

impl AdminClient {
    pub fn new(addr: SocketAddr, style: Style) -> AdminClient {
        let client = Client::builder(TokioExecutor::new()).build_http();
        AdminClient {
            addr,
            client,
            style,
        }
    }

    /// Sends one call, printing the curl line and the answer. Errors are printed, not returned:
    /// the drill goes on.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Option<(StatusCode, String)> {
        let url = format!("http://{}{path}", self.addr);
        let mut curl = String::from("curl -s");
        if method != Method::GET {
            curl.push_str(&format!(" -X {method}"));
        }
        curl.push_str(&format!(" {url}"));
        if let Some(b) = body {
            curl.push_str(&format!(" -d '{b}'"));
        }
        say!("  {} {}", self.style.dim("$"), self.style.bold(&curl));
        match self.send(method, &url, body).await {
            Ok((status, text)) => {
                let line = if path == "/status" {
                    status.as_u16().to_string()
                } else {
                    format!("{} {}", status.as_u16(), short(&text))
                };
                let line = if status.is_success() {
                    self.style.good(&line)
                } else {
                    self.style.bad(&line)
                };
                say!("    <- {line}");
                Some((status, text))
            }
            Err(e) => {
                say!("    <- {}", self.style.bad(&format!("failed: {e}")));
                None
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&str>,
    ) -> Result<(StatusCode, String), String> {
        let mut builder = Request::builder().method(method).uri(url);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
    }

    /// `GET /status`, shown as a short table.
    pub async fn show_status(&self) {
        let Some((status, text)) = self.call(Method::GET, "/status", None).await else {
            return;
        };
        if !status.is_success() {
            return;
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(json) => say_raw!(render_status(&json)),
            Err(_) => say!("    {}", short(&text)),
        }
    }
}

/// One line, at most about a hundred characters.
fn short(text: &str) -> String {
    let line = text.trim().replace('\n', " ");
    match line.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

fn render_status(json: &Value) -> String {
    fn str_of(v: &Value, key: &str) -> String {
        v.get(key).and_then(Value::as_str).unwrap_or("-").to_owned()
    }
    let mut out = String::new();
    let services = json
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for svc in &services {
        out.push_str(&format!(
            "    service {}  listen {}  active {}  write {}\n",
            str_of(svc, "name"),
            str_of(svc, "listen"),
            str_of(svc, "active_region"),
            str_of(svc, "write_region"),
        ));
        let regions = svc
            .get("regions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in &regions {
            let flag = |key: &str, word: &'static str| {
                if r.get(key).and_then(Value::as_bool) == Some(true) {
                    word
                } else {
                    ""
                }
            };
            let line = format!(
                "      {:<12} priority {}  {:<9} {:<6} {}",
                str_of(r, "name"),
                r.get("priority").and_then(Value::as_u64).unwrap_or(0),
                str_of(r, "state"),
                flag("active", "active"),
                flag("write", "write"),
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_one_line_per_region() {
        let json = serde_json::json!({"services": [{
        "name": "orders", "listen": "127.0.0.1:1", "active_region": "westus", "write_region": "westus",
        "regions": [
            {"name": "westus", "priority": 0, "state": "healthy", "active": true, "write": true},
            {"name": "eastasia", "priority": 2, "state": "unhealthy", "active": false, "write": false}
        ]}]});
        let text = render_status(&json);
        assert!(text.contains("service orders  listen 127.0.0.1:1  active westus  write westus"));
        assert!(text.contains("westus       priority 0  healthy   active write"));
        assert!(text.contains("eastasia     priority 2  unhealthy\n"));
    }

    #[test]
    fn long_bodies_are_cut() {
        assert_eq!(short(" ok \n"), "ok");
        assert!(short(&"x".repeat(300)).ends_with("..."));
    }
}
