//! TLS to a backend (`[registrations.postgres]`, `[event-log.nats]`): `tls`, `ca-file`,
//! `cert-file`, `key-file`, read the same way for both.

use std::path::PathBuf;

use crate::error::Errors;
use crate::reader::{string, Field, Table};
use crate::TlsClientConfig;

fn file(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<PathBuf> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, "expected a file path");
        return None;
    }
    Some(PathBuf::from(s))
}

/// Reads the TLS keys of `t`: `Some(None)` for `tls = "disable"` (the default), `Some(Some(..))`
/// for `"require"`, `None` after an error (pushed, naming the key). `backend` names the peer in
/// messages ("PostgreSQL", "NATS").
pub(crate) fn read_tls(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    backend: &str,
) -> Option<Option<TlsClientConfig>> {
    let require = match t.get("tls") {
        None => Some(false),
        Some(f) => match string(errs, &f)? {
            "disable" => Some(false),
            "require" => Some(true),
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("`{other}`: expected \"require\" or \"disable\""),
                );
                None
            }
        },
    };
    let ca = t.get("ca-file").map(|f| (file(errs, &f), f));
    let cert = t.get("cert-file").map(|f| (file(errs, &f), f));
    let key = t.get("key-file").map(|f| (file(errs, &f), f));
    let require = require?;
    if !require {
        // TLS files beside tls = "disable" would be silently unused: refuse them.
        for (_, f) in [&ca, &cert, &key].into_iter().flatten() {
            errs.push(
                &f.span(),
                &f.path,
                format!("TLS to {backend} is off: set tls = \"require\" to use it"),
            );
        }
        return if ca.is_some() || cert.is_some() || key.is_some() {
            None
        } else {
            Some(None)
        };
    }
    let ca_file = match ca {
        Some((p, _)) => p,
        None => {
            let at = t.get("tls").map(|f| (f.span(), f.path.clone()));
            if let Some((span, path)) = at {
                errs.push(
                    &span,
                    &path,
                    format!(
                        "tls = \"require\" needs ca-file: the CA certificate(s) (PEM) that \
                         signed {backend}'s server certificate"
                    ),
                );
            }
            None
        }
    };
    match (&cert, &key) {
        (Some(_), None) | (None, Some(_)) => {
            let (_, f) = cert.as_ref().or(key.as_ref())?;
            errs.push(
                &f.span(),
                &f.path,
                "a client certificate needs both cert-file and key-file",
            );
            return None;
        }
        _ => {}
    }
    let cert_file = match cert {
        None => None,
        Some((p, _)) => Some(p?),
    };
    let key_file = match key {
        None => None,
        Some((p, _)) => Some(p?),
    };
    Some(Some(TlsClientConfig {
        ca_file: ca_file?,
        cert_file,
        key_file,
    }))
}
