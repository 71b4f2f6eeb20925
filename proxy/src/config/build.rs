//! The top level of the file: global settings, `[admin]`, `[telemetry]` and the list of services,
//! plus the checks that span services (unique names, distinct listen addresses).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use super::fields::{choice, duration};
use super::model::{AdminConfig, Config, LogFormat, TelemetryConfig};
use super::reader::{Diags, Sp, Table};
use super::service::{SERVICE_KEYS, service};
use super::validate::{self, Listeners};

const ROOT_KEYS: &[&str] = &[
    "shutdown_grace",
    "workers",
    "admin",
    "telemetry",
    "services",
];
const DEFAULT_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
const OTLP_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Reads the whole document. The result is only meaningful when `d` holds no errors.
pub(crate) fn build(
    d: &mut Diags<'_>,
    root: &Spanned<DeTable<'_>>,
    source: PathBuf,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let t = Table::new(
        d,
        root.get_ref(),
        root.span(),
        String::new(),
        false,
        ROOT_KEYS,
    );
    let shutdown_grace = duration(d, &t, "shutdown_grace", Duration::from_secs(10)).0;
    let workers = t.integer_in(d, "workers", 0, 1024).unwrap_or(0);
    let mut listeners = Listeners::default();
    let admin = admin(d, &t, env, &mut listeners);
    let telemetry = telemetry(d, &t, env);

    let mut services = Vec::new();
    let mut names: Vec<Sp<String>> = Vec::new();
    let tables = t.tables(d, "services", SERVICE_KEYS);
    let none = "no services: add at least one [[services]] table";
    match (&tables, t.value("services")) {
        (_, None) => d.error(&(0..0), none),
        (Some(list), Some(value)) if list.is_empty() => d.error(&value.span(), none),
        _ => {}
    }
    for s in tables.iter().flatten() {
        let (config, name) = service(d, s, base, &mut listeners);
        if let Some(name) = name {
            if let Some(first) = names.iter().find(|n| n.value == name.value) {
                let line = d.line_of(first.span.start);
                d.error(
                    &name.span,
                    format!(
                        "duplicate service name {:?} (first on line {line})",
                        name.value
                    ),
                );
            } else {
                names.push(name);
            }
        }
        services.push(config);
    }
    listeners.check_targets(d);

    Config {
        source,
        shutdown_grace,
        workers,
        admin,
        telemetry,
        services,
    }
}

fn admin(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    env: &dyn Fn(&str) -> Option<String>,
    listeners: &mut Listeners,
) -> AdminConfig {
    let default_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 9901));
    let a = t.table(d, "admin", &["listen", "token_env"]);
    let listen = a
        .as_ref()
        .and_then(|a| a.string(d, "listen"))
        .and_then(|text| {
            validate::socket_addr(text.value)
                .map(|addr| (addr, text.span.clone()))
                .map_err(|message| d.error(&text.span, message))
                .ok()
        });
    let token_env = match a.as_ref().and_then(|a| a.string(d, "token_env")) {
        Some(name) if name.value.contains(['=', '\0']) => {
            d.error(
                &name.span,
                format!(
                    "invalid token_env {:?}: not an environment variable name",
                    name.value
                ),
            );
            None
        }
        // An explicit empty name turns bearer auth off (loopback only).
        Some(name) if name.value.is_empty() => None,
        Some(name) => Some(name.value.to_owned()),
        None => Some(DEFAULT_TOKEN_ENV.to_owned()),
    };
    let token = token_env
        .as_deref()
        .and_then(env)
        .filter(|token| !token.is_empty());
    let (addr, span) = match listen {
        Some((addr, span)) => (addr, Some(span)),
        None => (default_listen, None),
    };
    if let (Some(span), None) = (&span, &token)
        && !addr.ip().is_loopback()
    {
        let fix = match token_env.as_deref() {
            Some(name) => format!(
                "the variable {name} (token_env) is unset or empty; set it to a bearer token"
            ),
            None => "set token_env to a variable holding a bearer token".to_owned(),
        };
        d.error(span, format!("admin listen {addr} is not loopback: {fix}"));
    }
    listeners.claim(d, addr, span, "the admin API".to_owned());
    AdminConfig {
        listen: addr,
        token_env,
        token,
    }
}

fn telemetry(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> TelemetryConfig {
    let mut telemetry = TelemetryConfig {
        service_name: "switchyard".to_owned(),
        otlp_endpoint: None,
        log_format: LogFormat::Text,
    };
    if let Some(tm) = t.table(
        d,
        "telemetry",
        &["service_name", "otlp_endpoint", "log_format"],
    ) {
        if let Some(name) = tm.string(d, "service_name") {
            if name.value.is_empty() {
                d.error(&name.span, "service_name must not be empty");
            } else {
                telemetry.service_name = name.value.to_owned();
            }
        }
        if let Some(endpoint) = tm.string(d, "otlp_endpoint") {
            match validate::region_url(endpoint.value) {
                Ok(_) => telemetry.otlp_endpoint = Some(endpoint.value.to_owned()),
                Err(message) => d.error(
                    &endpoint.span,
                    message.replacen("invalid url", "invalid otlp_endpoint", 1),
                ),
            }
        }
        let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
        telemetry.log_format = choice(d, &tm, "log_format", &formats, LogFormat::Text);
    }
    if telemetry.otlp_endpoint.is_none() {
        telemetry.otlp_endpoint = env(OTLP_ENV).filter(|e| !e.is_empty());
    }
    telemetry
}
