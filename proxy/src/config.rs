//! Loading `switchyard.toml` into a validated [`Config`], reporting every error as `FILE:LINE:COL`.
//!
//! The file is parsed once with positions kept for every key and value, then read section by
//! section; each problem becomes a [`Diagnostic`] and reading carries on, so `switchyard check`
//! shows all errors at once. Nothing here touches the network: addresses must be literal IPs.

mod build;
mod fields;
mod json;
mod model;
mod reader;
mod regions;
mod service;
mod units;
mod validate;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// A place in the config file: 1-based line and column (counted in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in the config file, at a 1-based line and column (counted in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one file, in file order; displayed one per line, each line ending in
/// a newline so the whole report can be printed as is with `eprint!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Same as [`load`].
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        load(path)
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the file, taking the admin token and the OTLP endpoint fallback from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match load_with_errors(path)? {
        (config, errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// Like [`load`], but a file that is valid TOML yields a config even when it has errors: what
/// could be read, with defaults elsewhere, and every error found. `check` uses it to load the
/// plugins of a config with mistakes elsewhere, so one run reports every error.
pub fn load_with_errors(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|err| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read config file: {err}"),
        }])
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&err.as_bytes()[..valid]).into_owned();
            let mut d = reader::Diags::new(path, &prefix);
            d.error(&(valid..valid), "config file is not valid UTF-8");
            return Err(ConfigErrors(d.into_sorted()));
        }
    };
    build_with_errors(path, &text, &|name| std::env::var(name).ok())
}

/// Validates `text` as if read from `path` (for messages and relative paths) with an empty
/// environment: no admin token and no OTLP fallback. Files it names must still exist.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(path, text, &|_| None)
}

/// [`parse`] with environment variables looked up through `env`.
pub fn parse_with_env(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    match build_with_errors(path, text, env)? {
        (config, errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// The config and every error found; `Err` only when the text is not TOML at all.
fn build_with_errors(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Diagnostic>), ConfigErrors> {
    let mut d = reader::Diags::new(path, text);
    let root = match toml::de::DeTable::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            let message = err.message().trim_end_matches(", expected nothing");
            d.error(&span, format!("invalid TOML: {message}"));
            return Err(ConfigErrors(d.into_sorted()));
        }
    };
    // Relative paths in the file are relative to the file, not to wherever we were started.
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = source.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = build::build(&mut d, &root, source, &base, env);
    Ok((config, d.into_sorted()))
}
