//! `[registrations]`: where registrations come from (`backend`: the local store, or
//! PostgreSQL followed into the local store) and `[registrations.postgres]`'s connection.

use std::path::PathBuf;

use crate::error::Errors;
use crate::reader::{array, boolean, string, u32_in, Field, Table};
use crate::{PostgresConfig, PostgresTls, RegistrationBackend};

pub(crate) const REGISTRATIONS_KEYS: &[&str] = &["backend", "postgres"];
pub(crate) const POSTGRES_KEYS: &[&str] = &[
    "host",
    "port",
    "dbname",
    "user",
    "password-file",
    "tls",
    "ca-file",
    "cert-file",
    "key-file",
    "connect-timeout-secs",
    "migrate",
    "groups",
];

/// Reads `[registrations]`; `registration_file`: whether `server.registration-file` is set
/// (the PostgreSQL backend keeps its local copy there).
pub(super) fn read_registrations(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    registration_file: Option<bool>,
) -> Option<RegistrationBackend> {
    let backend = match t.get("backend") {
        None => "local",
        Some(f) => match string(errs, &f)? {
            b @ ("local" | "postgres") => {
                if b == "postgres" && registration_file == Some(false) {
                    errs.push(
                        &f.span(),
                        &f.path,
                        "the postgres backend keeps its local copy in the registration store: \
                         set server.registration-file",
                    );
                    return None;
                }
                if b == "postgres" && t.get("postgres").is_none() {
                    errs.push(
                        &f.span(),
                        &f.path,
                        "backend \"postgres\" needs [registrations.postgres] (host, dbname, user)",
                    );
                    return None;
                }
                b
            }
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("`{other}` is not a registration backend: expected \"local\" or \"postgres\""),
                );
                return None;
            }
        },
    };
    let pg = t
        .get("postgres")
        .map(|f| Table::open(errs, &f, POSTGRES_KEYS).and_then(|pt| read_postgres(errs, &pt)));
    match backend {
        "postgres" => pg
            .flatten()
            .map(|p| RegistrationBackend::Postgres(Box::new(p))),
        _ => {
            // A [registrations.postgres] beside the local backend is checked (so a typo
            // shows) but unused.
            pg?;
            Some(RegistrationBackend::Local)
        }
    }
}

fn nonempty(errs: &mut Errors<'_>, f: &Field<'_, '_>, what: &str) -> Option<String> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, format!("expected {what}"));
        return None;
    }
    Some(s.to_string())
}

fn read_postgres(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<PostgresConfig> {
    let host = t
        .require(errs, "host")
        .and_then(|f| nonempty(errs, &f, "a host name, address or socket directory"));
    let port = match t.get("port") {
        None => Some(5432),
        Some(f) => u32_in(errs, &f, 1, 65_535, "between 1 and 65535").map(|p| p as u16),
    };
    let dbname = t
        .require(errs, "dbname")
        .and_then(|f| nonempty(errs, &f, "a database name"));
    let user = t
        .require(errs, "user")
        .and_then(|f| nonempty(errs, &f, "a user name"));
    let password_file = t
        .get("password-file")
        .map(|f| nonempty(errs, &f, "a file path").map(PathBuf::from));
    let tls = super::tls::read_tls(errs, t, "PostgreSQL").and_then(|tls| match tls {
        None => Some(PostgresTls::Disable),
        Some(c) => {
            if host.as_deref().is_some_and(|h| h.starts_with('/')) {
                if let Some(f) = t.get("tls") {
                    errs.push(
                        &f.span(),
                        &f.path,
                        "TLS needs a TCP connection: host is a UNIX socket directory",
                    );
                }
                return None;
            }
            Some(PostgresTls::Require(c))
        }
    });
    let connect_timeout_secs = match t.get("connect-timeout-secs") {
        None => Some(5),
        Some(f) => u32_in(errs, &f, 1, 600, "between 1 and 600"),
    };
    let migrate = match t.get("migrate") {
        None => Some(true),
        Some(f) => boolean(errs, &f),
    };
    let groups = match t.get("groups") {
        None => Some(None),
        Some(f) => read_groups(errs, &f).map(Some),
    };
    Some(PostgresConfig {
        host: host?,
        port: port?,
        dbname: dbname?,
        user: user?,
        password_file: password_file.map_or(Some(None), |p| p.map(Some))?,
        tls: tls?,
        connect_timeout_secs: connect_timeout_secs?,
        migrate: migrate?,
        groups: groups?,
    })
}

/// `groups`: a non-empty list of distinct, non-empty group names.
fn read_groups(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Vec<String>> {
    let items = array(errs, f)?;
    if items.is_empty() {
        errs.push(
            &f.span(),
            &f.path,
            "an empty list would load no registration: leave `groups` out to load them all",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for it in &items {
        match nonempty(errs, it, "a group name") {
            Some(g) if out.contains(&g) => {
                errs.push(&it.span(), &it.path, format!("group `{g}` listed twice"));
                ok = false;
            }
            Some(g) => out.push(g),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
