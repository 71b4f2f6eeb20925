//! Writing configs in tests: free ports and `{placeholder}` templates.

use std::fmt::Display;
use std::net::{Ipv4Addr, TcpListener};

/// A port that was free a moment ago on 127.0.0.1 (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Replaces each `{name}` in `template` by its value; other braces (TOML inline tables)
/// are left alone.
pub fn render(template: &str, vars: &[(&str, &dyn Display)]) -> String {
    vars.iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), &value.to_string())
        })
}
