//! A span-aware reader over a parsed TOML table that records every problem instead of stopping.
//!
//! serde's derive stops at the first error and loses positions for semantic checks, so we walk
//! `toml::de::DeTable` by hand: each getter either returns the value with its byte span or
//! records a diagnostic at the offending value and returns `None`, letting the caller carry on
//! with a default and find the next error.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Diagnostic;

pub(crate) type Span = Range<usize>;

/// A value together with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Sp<T> {
    pub value: T,
    pub span: Span,
}

/// Collects diagnostics and turns byte offsets into 1-based line and column (in characters).
pub(crate) struct Diags<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
    found: Vec<(usize, Diagnostic)>,
}

impl<'a> Diags<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
            found: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: &Span, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        let diagnostic = Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        };
        self.found.push((span.start, diagnostic));
    }

    /// Where `span` starts, for things checked after the file is read (plugins).
    pub(crate) fn locate(&self, span: &Span) -> super::SourcePos {
        let (line, column) = self.position(span.start);
        super::SourcePos {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    /// 1-based line of a byte offset, for messages that point at another place in the file.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = match self.text.get(start..offset) {
            // A byte-order mark is invisible in every editor; do not count it.
            Some(prefix) => prefix.trim_start_matches('\u{feff}').chars().count(),
            None => offset - start,
        };
        (line.max(1), column + 1)
    }

    /// In file order; the same message at the same place is reported once.
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|(offset, _)| *offset);
        self.found
            .dedup_by(|a, b| a.0 == b.0 && a.1.message == b.1.message);
        self.found.into_iter().map(|(_, d)| d).collect()
    }
}

/// One TOML table being read: knows its allowed keys and how to name itself in messages.
pub(crate) struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Span,
    path: String,
    array: bool,
}

impl<'t, 'i> Table<'t, 'i> {
    /// Wraps a table and reports each key not in `keys` at the key's position.
    pub(crate) fn new(
        d: &mut Diags<'_>,
        table: &'t DeTable<'i>,
        span: Span,
        path: String,
        array: bool,
        keys: &[&str],
    ) -> Self {
        let this = Self {
            table,
            span,
            path,
            array,
        };
        for key in table.keys() {
            if !keys.contains(&key.get_ref().as_ref()) {
                let message = format!(
                    "unknown key {:?} in {}; valid keys: {}",
                    key.get_ref(),
                    this.label(),
                    keys.join(", ")
                );
                d.error(&key.span(), message);
            }
        }
        this
    }

    /// Where the table starts: its header, or the `{` of an inline table.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// `[services.retry]`, `[[services]]`, or "the top level".
    pub(crate) fn label(&self) -> String {
        match (self.path.is_empty(), self.array) {
            (true, _) => "the top level".to_owned(),
            (false, true) => format!("[[{}]]", self.path),
            (false, false) => format!("[{}]", self.path),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn value(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    /// Reports a required key that is absent, at the table's header.
    pub(crate) fn missing(&self, d: &mut Diags<'_>, key: &str) {
        d.error(
            &self.span,
            format!("missing key {key:?} in {}", self.label()),
        );
    }

    /// Reports `expected a string for "listen", found an integer` at the value.
    pub(crate) fn wrong_type(
        &self,
        d: &mut Diags<'_>,
        key: &str,
        expected: &str,
        value: &Spanned<DeValue<'_>>,
    ) {
        let found = describe(value.get_ref());
        d.error(
            &value.span(),
            format!("expected {expected} for {key:?}, found {found}"),
        );
    }

    pub(crate) fn string(&self, d: &mut Diags<'_>, key: &str) -> Option<Sp<&'t str>> {
        let value = self.value(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Sp {
                value: s.as_ref(),
                span: value.span(),
            }),
            _ => {
                self.wrong_type(d, key, "a string", value);
                None
            }
        }
    }

    /// Like [`Table::string`], but a missing key is an error.
    pub(crate) fn required_string(&self, d: &mut Diags<'_>, key: &str) -> Option<Sp<&'t str>> {
        if self.value(key).is_none() {
            self.missing(d, key);
            return None;
        }
        self.string(d, key)
    }

    pub(crate) fn boolean(&self, d: &mut Diags<'_>, key: &str) -> Option<Sp<bool>> {
        let value = self.value(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(Sp {
                value: *b,
                span: value.span(),
            }),
            _ => {
                self.wrong_type(d, key, "true or false", value);
                None
            }
        }
    }

    /// Any TOML integer, wide enough that range checks never overflow.
    pub(crate) fn integer(&self, d: &mut Diags<'_>, key: &str) -> Option<Sp<i128>> {
        let value = self.value(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.wrong_type(d, key, "an integer", value);
        }
        parsed.map(|value_| Sp {
            value: value_,
            span: value.span(),
        })
    }

    /// An integer within `min..=max`, reported with the allowed range otherwise.
    pub(crate) fn integer_in<T: TryFrom<i128>>(
        &self,
        d: &mut Diags<'_>,
        key: &str,
        min: i128,
        max: i128,
    ) -> Option<T> {
        let n = self.integer(d, key)?;
        match T::try_from(n.value) {
            Ok(v) if (min..=max).contains(&n.value) => Some(v),
            _ => {
                // Bounds that only come from the Rust type read better as "at least".
                let message = if max >= i128::from(u32::MAX) && n.value < min {
                    format!("{key:?} must be at least {min}, got {}", n.value)
                } else if max >= i128::from(u32::MAX) {
                    format!("{key:?} must be at most {max}, got {}", n.value)
                } else {
                    format!("{key:?} must be between {min} and {max}, got {}", n.value)
                };
                d.error(&n.span, message);
                None
            }
        }
    }

    /// A float or an integer, as `f64`.
    pub(crate) fn number(&self, d: &mut Diags<'_>, key: &str) -> Option<Sp<f64>> {
        let value = self.value(key)?;
        let parsed = match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|i| i as f64),
            _ => None,
        };
        if parsed.is_none() {
            self.wrong_type(d, key, "a number", value);
        }
        parsed.map(|value_| Sp {
            value: value_,
            span: value.span(),
        })
    }

    /// An array whose elements are all strings; each bad element is reported.
    pub(crate) fn strings(&self, d: &mut Diags<'_>, key: &str) -> Option<Vec<Sp<&'t str>>> {
        let value = self.value(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(d, key, "an array of strings", value);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Sp {
                    value: s.as_ref(),
                    span: item.span(),
                }),
                other => d.error(
                    &item.span(),
                    format!("expected a string in {key:?}, found {}", describe(other)),
                ),
            }
        }
        Some(out)
    }

    /// A sub-table (`[a.b]` or `b = { ... }`) with its own allowed keys.
    pub(crate) fn table(
        &self,
        d: &mut Diags<'_>,
        key: &str,
        keys: &[&str],
    ) -> Option<Table<'t, 'i>> {
        let value = self.value(key)?;
        let DeValue::Table(table) = value.get_ref() else {
            self.wrong_type(d, key, "a table", value);
            return None;
        };
        Some(Table::new(
            d,
            table,
            value.span(),
            self.child_path(key),
            false,
            keys,
        ))
    }

    /// An array of tables (`[[a.b]]`); `None` when absent or not an array.
    pub(crate) fn tables(
        &self,
        d: &mut Diags<'_>,
        key: &str,
        keys: &[&str],
    ) -> Option<Vec<Table<'t, 'i>>> {
        let value = self.value(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            let header = self.child_path(key);
            d.error(
                &value.span(),
                format!(
                    "expected an array of tables for {key:?}, found {} (write [[{header}]])",
                    describe(value.get_ref())
                ),
            );
            return None;
        };
        let path = self.child_path(key);
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(table) => {
                    out.push(Table::new(d, table, item.span(), path.clone(), true, keys));
                }
                other => d.error(
                    &item.span(),
                    format!("expected a table in {key:?}, found {}", describe(other)),
                ),
            }
        }
        Some(out)
    }
}

/// The TOML type of a value, with an article, for "found ..." messages.
fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
