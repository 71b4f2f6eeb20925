//! Config text for tests: one service in front of fake regions, with drill-speed timers.
//!
//! Tests read best when the TOML they run is visible, so this only fills in the boilerplate
//! (ports, region URLs, fast health checks) and lets each test append its own sections.

use std::fmt::Write;

use crate::fake_region::FakeRegion;
use crate::template::free_port;

/// A config for one service `orders` on a fresh port, regions in the given priority order
/// (the first is the write region), health checks every 100 ms.
pub struct TestConfig {
    pub admin_port: u16,
    pub port: u16,
    /// Extra TOML inside `[[services]]` before the regions (e.g. `[services.retry]` tables).
    pub service_extra: String,
    /// Extra TOML at the top level, before `[admin]`.
    pub top_extra: String,
    regions: Vec<(String, String)>,
    plugins: String,
}

impl TestConfig {
    pub fn new(regions: &[&FakeRegion]) -> Self {
        let named: Vec<(&str, String)> = regions.iter().map(|r| (r.name(), r.url())).collect();
        Self::with_urls(&named)
    }

    /// As [`TestConfig::new`], for regions given as (name, URL), e.g. a [`crate::RawRegion`].
    pub fn with_urls(regions: &[(&str, String)]) -> Self {
        TestConfig {
            admin_port: free_port(),
            port: free_port(),
            service_extra: String::new(),
            top_extra: String::new(),
            regions: regions
                .iter()
                .map(|(name, url)| ((*name).to_owned(), url.clone()))
                .collect(),
            plugins: String::new(),
        }
    }

    /// Appends TOML to the service (before the regions).
    pub fn service(mut self, toml: &str) -> Self {
        self.service_extra.push_str(toml);
        self.service_extra.push('\n');
        self
    }

    /// Appends TOML at the top level.
    pub fn top(mut self, toml: &str) -> Self {
        self.top_extra.push_str(toml);
        self.top_extra.push('\n');
        self
    }

    /// Adds a `[[services.plugins]]` entry; `config` is an inline TOML table like `{ a = 1 }`.
    pub fn plugin(mut self, path: &std::path::Path, on_error: &str, config: &str) -> Self {
        let _ = write!(
            self.plugins,
            "\n[[services.plugins]]\npath = {:?}\non_error = \"{on_error}\"\nconfig = {config}\n",
            path.display().to_string()
        );
        self
    }

    /// The proxy's service address, for raw connections.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The proxy's service URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        t.push_str("shutdown_grace = \"5s\"\n");
        t.push_str(&self.top_extra);
        let _ = write!(
            t,
            "\n[admin]\nlisten = \"127.0.0.1:{}\"\n\n[[services]]\nname = \"orders\"\nlisten = \"127.0.0.1:{}\"\n",
            self.admin_port, self.port
        );
        // Plain service keys in `service_extra` must come before any table header.
        t.push_str(&self.service_extra);
        if !self.service_extra.contains("[services.health]") {
            t.push_str(
                "\n[services.health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n",
            );
        }
        for (i, (name, url)) in self.regions.iter().enumerate() {
            let _ = write!(
                t,
                "\n[[services.regions]]\nname = \"{name}\"\npriority = {i}\nurl = \"{url}\"\nwrite = {}\n",
                i == 0
            );
        }
        t.push_str(&self.plugins);
        t
    }
}
