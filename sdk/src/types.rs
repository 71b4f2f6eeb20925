//! Plain Rust types for what crosses the ABI, so plugins never touch generated bindings.

use crate::host;

/// The service's regions as [`host::regions`] returns them: shared, so asking again while
/// nothing changed copies nothing.
pub type Regions = std::rc::Rc<[Region]>;

/// An HTTP header as `(name, value)`.
pub type Header = (String, String);

/// The request a hook is about. Headers are fetched from the host on demand, so reading a
/// header costs a host call and unread headers cost nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    id: u64,
    method: String,
    path: String,
    authority: Option<String>,
}

impl Request {
    /// A request as the host would pass it; for tests (headers come from the mock host).
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Request {
            id: 0,
            method: method.into(),
            path: path.into(),
            authority: None,
        }
    }

    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    /// Host-assigned id, the same in every hook for this request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The method as received, e.g. `"GET"`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Path and query as received, e.g. `"/orders/42?expand=items"`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The authority the client addressed (`:authority` or `Host`), if any.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// A request header (name case-insensitive); repeated headers come joined with `", "`.
    pub fn header(&self, name: &str) -> Option<String> {
        host::get_header(name)
    }

    /// GET or HEAD: a read that any replica can serve.
    pub fn is_read(&self) -> bool {
        matches!(self.method(), "GET" | "HEAD")
    }

    /// POST, PUT, PATCH or DELETE: a request that changes state.
    pub fn is_write(&self) -> bool {
        matches!(self.method(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// A region's response as `on_response` sees it (headers only; the body is not exposed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The region that answered.
    pub region: String,
    /// Lowercase names, hop-by-hop headers removed.
    pub headers: Vec<Header>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response the sidecar sends itself. Build it with [`LocalResponse::new`] and chained
/// setters; the host computes `content-length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (a name given twice is sent twice).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A `text/plain; charset=utf-8` body.
    pub fn text(self, body: impl Into<String>) -> Self {
        self.header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// Marks the response as a degraded answer (`x-switchyard-degraded: 1`). The host marks
    /// every response a plugin makes this way anyway, as the product contract requires of
    /// responses the sidecar makes itself; this only makes it explicit in the plugin's code.
    pub fn degraded(self) -> Self {
        self.header("x-switchyard-degraded", "1")
    }

    /// The first value of a header (name case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Decision {
    /// Route as if there were no plugin: healthy regions by priority.
    #[default]
    Default,
    /// Try these regions first, in order (unknown or unhealthy ones skipped), then the rest.
    Prefer(Vec<String>),
    /// Only this region; if it cannot serve, the request is unavailable.
    Pin(String),
    /// Answer without contacting any region.
    Local(LocalResponse),
}

impl Decision {
    pub fn prefer<I, S>(regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Decision::Prefer(regions.into_iter().map(Into::into).collect())
    }

    pub fn pin(region: impl Into<String>) -> Self {
        Decision::Pin(region.into())
    }
}

/// What to do with a region's response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResponseAction {
    /// Send it unchanged.
    #[default]
    Pass,
    /// Add these headers, each name replacing any existing values of that name.
    SetHeaders(Vec<Header>),
    /// Send this instead.
    Replace(LocalResponse),
}

/// What to answer when no region could serve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UnavailableAction {
    /// The service's configured degraded answer.
    #[default]
    Default,
    /// The stale-if-error cache entry if there is one, else the degraded answer.
    Stale,
    /// This response.
    Local(LocalResponse),
}

/// One region of the service, as routing sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// Lower is preferred.
    pub priority: u32,
    /// Routing may send traffic there now.
    pub healthy: bool,
    /// The service's current write region.
    pub write: bool,
    /// Recent latency; 0 when unknown.
    pub latency_ms: u32,
}

impl Region {
    /// A healthy, read-only region with unknown latency; adjust with the setters (for tests).
    pub fn new(name: impl Into<String>, priority: u32) -> Self {
        Region {
            name: name.into(),
            priority,
            healthy: true,
            write: false,
            latency_ms: 0,
        }
    }

    pub fn write(mut self) -> Self {
        self.write = true;
        self
    }

    pub fn unhealthy(mut self) -> Self {
        self.healthy = false;
        self
    }

    pub fn latency_ms(mut self, latency_ms: u32) -> Self {
        self.latency_ms = latency_ms;
        self
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A hook the host need not call when a plugin leaves it at the default (the SDK tells the
/// host so, the first time the default runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    OnResponse,
    OnUnavailable,
}
