//! The `[api]` section: the HTTP/JSON control API and its Prometheus `/metrics`.
//!
//! ```toml
//! [api]
//! # The API always listens on the control socket (`server.control-socket`, mode 0600).
//! listen = "127.0.0.1:8067"        # optional TCP listener (ip:port)
//! token-file = "/etc/xdhcpd/api.token"  # bearer token required on TCP; needed for
//!                                  # any address that is not loopback
//! metrics = true                   # serve GET /metrics (default true)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::Errors;
use super::reader::{boolean, string, Table};

pub(crate) const API_KEYS: &[&str] = &["listen", "token-file", "metrics"];

/// A validated `[api]` section (the defaults when it is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// TCP listen address (`None`: only the UNIX control socket).
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must send (`Authorization: Bearer ...`).
    pub token_file: Option<PathBuf>,
    /// Serve `GET /metrics`.
    pub metrics: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            token_file: None,
            metrics: true,
        }
    }
}

pub(crate) fn read_api(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<ApiConfig> {
    let mut ok = true;
    let listen = match t.get("listen") {
        None => None,
        Some(f) => match string(errs, &f) {
            None => {
                ok = false;
                None
            }
            Some(s) => match s.trim().parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("{s}: port 0 is not a listen port"),
                    );
                    ok = false;
                    None
                }
                Ok(a) => Some((a, f.span(), f.path.clone())),
                Err(_) => {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!(
                            "{s:?} is not a listen address: expected ip:port \
                             (\"127.0.0.1:8067\", \"[::1]:8067\")"
                        ),
                    );
                    ok = false;
                    None
                }
            },
        },
    };
    let token_file = match t.get("token-file") {
        None => None,
        Some(f) => match string(errs, &f) {
            Some(s) if !s.is_empty() && !s.contains('\0') => Some(PathBuf::from(s)),
            Some(_) => {
                errs.push(&f.span(), &f.path, "expected a file path");
                ok = false;
                None
            }
            None => {
                ok = false;
                None
            }
        },
    };
    let metrics = match t.get("metrics") {
        None => true,
        Some(f) => match boolean(errs, &f) {
            Some(b) => b,
            None => {
                ok = false;
                true
            }
        },
    };
    if let Some((addr, span, path)) = &listen {
        if !addr.ip().is_loopback() && token_file.is_none() && t.get("token-file").is_none() {
            errs.push(
                span,
                path,
                format!(
                    "{addr} is not a loopback address: a TCP listener reachable from the \
                     network needs `api.token-file` (bearer token)"
                ),
            );
            ok = false;
        }
    }
    ok.then(|| ApiConfig {
        listen: listen.map(|(a, _, _)| a),
        token_file,
        metrics,
    })
}
