//! A service's `[[services.regions]]` and `[[services.plugins]]`: where traffic may go and
//! which policy plugins decide it.

use std::path::Path;

use http::uri::Scheme;
use toml::de::DeValue;

use super::fields::{choice, existing_file};
use super::json::to_json;
use super::model::{OnError, PluginConfig, RegionConfig, UpstreamTls};
use super::reader::{Diags, Sp, Table};
use super::validate::{self, Listeners};

const REGION_KEYS: &[&str] = &["name", "priority", "url", "write", "tls"];
const REGION_TLS_KEYS: &[&str] = &["ca_file", "client_cert", "client_key", "server_name"];
const PLUGIN_KEYS: &[&str] = &["path", "on_error", "config"];

/// The service's regions, sorted by priority (ties keep file order).
pub(crate) fn regions(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    base: &Path,
    service: &str,
    listeners: &mut Listeners,
) -> Vec<RegionConfig> {
    let tables = t.tables(d, "regions", REGION_KEYS);
    let no_regions = format!("{service} has no regions: add at least one [[services.regions]]");
    match (&tables, t.value("regions")) {
        (_, None) => d.error(&t.span(), no_regions),
        (Some(list), Some(value)) if list.is_empty() => d.error(&value.span(), no_regions),
        _ => {}
    }
    let mut names: Vec<Sp<String>> = Vec::new();
    let mut writer: Option<Sp<String>> = None;
    let mut out = Vec::new();
    for r in tables.iter().flatten() {
        let name = r.required_string(d, "name");
        if let Some(name) = &name {
            if let Err(message) = validate::name(name.value, "region") {
                d.error(&name.span, message);
            } else if let Some(first) = names.iter().find(|n| n.value == name.value) {
                let line = d.line_of(first.span.start);
                d.error(
                    &name.span,
                    format!(
                        "duplicate region name {:?} in {service} (first on line {line})",
                        name.value
                    ),
                );
            } else {
                names.push(Sp {
                    value: name.value.to_owned(),
                    span: name.span.clone(),
                });
            }
        }
        let name = name.map(|n| n.value.to_owned()).unwrap_or_default();
        let priority = r
            .integer_in(d, "priority", 0, i128::from(u32::MAX))
            .unwrap_or(0);
        let write = r.boolean(d, "write");
        if let Some(write) = write.as_ref().filter(|w| w.value) {
            match &writer {
                Some(first) => {
                    let line = d.line_of(first.span.start);
                    d.error(
                        &write.span,
                        format!(
                            "only one region per service may have write = true; region {:?} (line {line}) already does",
                            first.value
                        ),
                    );
                }
                None => {
                    writer = Some(Sp {
                        value: name.clone(),
                        span: write.span.clone(),
                    });
                }
            }
        }
        let url = r.required_string(d, "url");
        let parsed = url.as_ref().and_then(|url| {
            validate::region_url(url.value)
                .map_err(|message| d.error(&url.span, message))
                .ok()
        });
        if let (Some(parsed), Some(url)) = (&parsed, &url) {
            let port = parsed
                .authority
                .port_u16()
                .unwrap_or(if parsed.scheme == Scheme::HTTPS {
                    443
                } else {
                    80
                });
            listeners.target(parsed.authority.host(), port, url.span.clone(), url.value);
        }
        let tls = region_tls(d, r, base);
        if let (Some(tls_value), Some(parsed), Some(url)) = (r.value("tls"), &parsed, &url)
            && tls.is_some()
            && parsed.scheme != Scheme::HTTPS
        {
            d.error(
                &tls_value.span(),
                format!(
                    "tls is set but url {:?} is plain http: use https:// or remove tls",
                    url.value
                ),
            );
        }
        if let (Some(parsed), Some(url)) = (parsed, url) {
            out.push(RegionConfig {
                name,
                priority,
                scheme: parsed.scheme,
                authority: parsed.authority,
                base_path: parsed.base_path,
                url: url.value.to_owned(),
                write: write.is_some_and(|w| w.value),
                tls,
            });
        }
    }
    out.sort_by_key(|r| r.priority);
    out
}

fn region_tls(d: &mut Diags<'_>, r: &Table<'_, '_>, base: &Path) -> Option<UpstreamTls> {
    let tls = r.table(d, "tls", REGION_TLS_KEYS)?;
    let ca_file = existing_file(d, &tls, "ca_file", base, false);
    let client_cert = existing_file(d, &tls, "client_cert", base, false);
    let client_key = existing_file(d, &tls, "client_key", base, false);
    // Pairing is judged on what was written, even if a file is missing.
    for (have, need) in [("client_cert", "client_key"), ("client_key", "client_cert")] {
        if let (Some(value), None) = (tls.value(have), tls.value(need)) {
            d.error(&value.span(), format!("{have} requires {need}"));
        }
    }
    let server_name = tls.string(d, "server_name").and_then(|name| {
        if name.value.is_empty() {
            d.error(&name.span, "server_name must not be empty");
            None
        } else {
            Some(name.value.to_owned())
        }
    });
    // Files that were named and found; a missing one is reported above already.
    let complete = [
        (&ca_file, "ca_file"),
        (&client_cert, "client_cert"),
        (&client_key, "client_key"),
    ]
    .iter()
    .all(|(path, key)| path.is_some() || tls.value(key).is_none());
    let upstream = UpstreamTls {
        ca_file,
        client_cert,
        client_key,
        server_name,
    };
    // Read the PEM files now, as connecting will: `check` must refuse what `run` would.
    if complete && let Err(e) = crate::upstream::tls::client_config(Some(&upstream)) {
        d.error(&tls.span(), format!("region tls: {e}"));
    }
    Some(upstream)
}

pub(crate) fn plugins(d: &mut Diags<'_>, t: &Table<'_, '_>, base: &Path) -> Vec<PluginConfig> {
    let mut out = Vec::new();
    for p in t.tables(d, "plugins", PLUGIN_KEYS).iter().flatten() {
        let path = existing_file(d, p, "path", base, true);
        let on_error = choice(
            d,
            p,
            "on_error",
            &[
                ("fail-open", OnError::FailOpen),
                ("fail-closed", OnError::FailClosed),
            ],
            OnError::FailOpen,
        );
        let config = match p.value("config") {
            None => serde_json::Value::Object(serde_json::Map::new()),
            Some(value) if matches!(value.get_ref(), DeValue::Table(_)) => to_json(d, value),
            Some(value) => {
                p.wrong_type(d, "config", "a table", value);
                serde_json::Value::Null
            }
        };
        if let Some(path) = path {
            let at = p.value("path").map(|v| d.locate(&v.span()));
            out.push(PluginConfig {
                path,
                on_error,
                config,
                at,
            });
        }
    }
    out
}
