//! The `[bulk-leasequery]` section: RFC 6926 bulk leasequery over TCP (off when absent).
//!
//! ```toml
//! [bulk-leasequery]
//! listen = "0.0.0.0:67"      # TCP listener (ip:port; default port 67)
//! max-connections = 16       # connections served at once; more are refused
//! idle-timeout = 60          # seconds a connection may stay silent with no query running
//! active-queue = 16384       # RFC 7724: changes queued per subscriber before it is cut off
//! tls = "require"            # RFC 7724 DHCPTLS: "disable" (default), "offer", "require"
//! cert-file = "/etc/xdhcpd/lq.crt"   # the server's certificate chain (PEM)
//! key-file = "/etc/xdhcpd/lq.key"    # its private key (PEM)
//! client-ca-file = "/etc/xdhcpd/access-ca.crt"  # optional: requestors must present a
//!                                                # certificate this CA signed
//! ```
//! Who may ask: `server.leasequery-allow` (as for RFC 4388 over UDP), with or without TLS.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::Errors;
use super::reader::{string, u32_in, Field, Table};

pub(crate) const BULK_LEASEQUERY_KEYS: &[&str] = &[
    "listen",
    "max-connections",
    "idle-timeout",
    "active-queue",
    "tls",
    "cert-file",
    "key-file",
    "client-ca-file",
];

/// `tls` of `[bulk-leasequery]` when on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeasequeryTlsMode {
    /// `"offer"`: TLS for a requestor that sends DHCPTLS first; queries in clear answered too.
    Offer,
    /// `"require"`: queries only inside TLS; one in clear is refused NotAllowed.
    Require,
}

/// The leasequery listener's TLS (RFC 7724 DHCPTLS): the server's certificate and key, and
/// optionally the CA whose certificates requestors must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasequeryTls {
    /// Offer or require.
    pub mode: LeasequeryTlsMode,
    /// `cert-file`: the server's certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// `key-file`: the server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `client-ca-file`: a requestor must present a certificate signed by one of these CAs
    /// (PEM) in the handshake, else the handshake fails. Always set: RFC 7724 (section 8.1)
    /// makes leasequery TLS mutually authenticated, so `tls` without it is refused.
    pub client_ca_file: Option<PathBuf>,
}

/// A validated `[bulk-leasequery]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkLeasequeryConfig {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// Connections served at once; one more is accepted and closed at once (counted).
    pub max_connections: u32,
    /// Seconds a connection may stay without input while no query runs.
    pub idle_timeout: u32,
    /// RFC 7724 active leasequery: binding changes queued per subscriber; a subscriber
    /// whose queue is full is cut off (DataMissing) rather than slow anything down.
    pub active_queue: u32,
    /// RFC 7724 TLS (`tls`, `cert-file`, `key-file`, `client-ca-file`); None: `"disable"`.
    pub tls: Option<LeasequeryTls>,
}

impl Default for BulkLeasequeryConfig {
    fn default() -> Self {
        BulkLeasequeryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 67)),
            max_connections: 16,
            idle_timeout: 60,
            active_queue: 16_384,
            tls: None,
        }
    }
}

fn file(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<PathBuf> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, "expected a file path");
        return None;
    }
    Some(PathBuf::from(s))
}

/// A file key's path (None after an error) and its field (for positioned errors).
type FileKey<'a, 'i> = (Option<PathBuf>, Field<'a, 'i>);

/// `tls`, `cert-file`, `key-file`, `client-ca-file`: `Some(None)` for TLS off, `None` after an
/// error (pushed, naming the key).
fn read_tls(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<Option<LeasequeryTls>> {
    let tls = t.get("tls");
    let mode = match &tls {
        None => Some(None),
        Some(f) => match string(errs, f)? {
            "disable" => Some(None),
            "offer" => Some(Some(LeasequeryTlsMode::Offer)),
            "require" => Some(Some(LeasequeryTlsMode::Require)),
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("`{other}`: expected \"disable\", \"offer\" or \"require\""),
                );
                None
            }
        },
    };
    let files: Vec<(&str, Option<FileKey<'_, '_>>)> = ["cert-file", "key-file", "client-ca-file"]
        .into_iter()
        .map(|k| (k, t.get(k).map(|f| (file(errs, &f), f))))
        .collect();
    let mode = mode?;
    let Some(mode) = mode else {
        // Files beside TLS off would be silently unused: refuse them.
        let mut any = false;
        for (_, f) in files.iter().filter_map(|(k, f)| f.as_ref().map(|f| (k, f))) {
            any = true;
            errs.push(
                &f.1.span(),
                &f.1.path,
                "leasequery TLS is off: set tls = \"offer\" or \"require\" to use it",
            );
        }
        return if any { None } else { Some(None) };
    };
    let mut ok = true;
    let mut get = |k: &str| -> Option<PathBuf> {
        let (_, f) = files.iter().find(|(n, _)| *n == k)?;
        match f {
            Some((Some(p), _)) => Some(p.clone()),
            Some((None, _)) => {
                ok = false;
                None
            }
            None => None,
        }
    };
    let cert = get("cert-file");
    let key = get("key-file");
    let client_ca = get("client-ca-file");
    if !ok {
        return None;
    }
    let (Some(cert_file), Some(key_file)) = (cert, key) else {
        if let Some(f) = &tls {
            errs.push(
                &f.span(),
                &f.path,
                "TLS needs cert-file and key-file: the server's certificate chain and its \
                 private key (PEM)",
            );
        }
        return None;
    };
    // RFC 7724 section 8.1: every TLS connection for leasequery is mutually authenticated;
    // the server validates the requestor's certificate.
    let Some(client_ca) = client_ca else {
        if let Some(f) = &tls {
            errs.push(
                &f.span(),
                &f.path,
                "TLS needs client-ca-file: RFC 7724 leasequery TLS is mutually authenticated,                  the requestors' certificates are verified against this CA (PEM)",
            );
        }
        return None;
    };
    Some(Some(LeasequeryTls {
        mode,
        cert_file,
        key_file,
        client_ca_file: Some(client_ca),
    }))
}

pub(crate) fn read_bulk_leasequery(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
) -> Option<BulkLeasequeryConfig> {
    let d = BulkLeasequeryConfig::default();
    let mut ok = true;
    let listen = match t.get("listen") {
        None => d.listen,
        Some(f) => match string(errs, &f) {
            None => {
                ok = false;
                d.listen
            }
            Some(s) => {
                let s = s.trim();
                let parsed = s
                    .parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 67).into()));
                match parsed {
                    Some(a) if a.port() != 0 => a,
                    _ => {
                        errs.push(
                            &f.span(),
                            &f.path,
                            format!(
                                "{s:?} is not a listen address: expected ip or ip:port \
                                 (\"0.0.0.0:67\", \"10.0.0.1\")"
                            ),
                        );
                        ok = false;
                        d.listen
                    }
                }
            }
        },
    };
    let mut num = |key: &str, lo: u32, hi: u32, what: &str, default: u32| match t.get(key) {
        None => default,
        Some(f) => u32_in(errs, &f, lo, hi, what).unwrap_or_else(|| {
            ok = false;
            default
        }),
    };
    let max_connections = num(
        "max-connections",
        1,
        1024,
        "between 1 and 1024 connections",
        d.max_connections,
    );
    let idle_timeout = num(
        "idle-timeout",
        1,
        86_400,
        "between 1 and 86400 seconds",
        d.idle_timeout,
    );
    let active_queue = num(
        "active-queue",
        16,
        1 << 20,
        "between 16 and 1048576 changes",
        d.active_queue,
    );
    let tls = read_tls(errs, t);
    ok &= tls.is_some();
    ok.then_some(BulkLeasequeryConfig {
        listen,
        max_connections,
        idle_timeout,
        active_queue,
        tls: tls.flatten(),
    })
}
