//! Registration requests: the server side (one handler over the store, called from the
//! control API's blocking pool) and `xdhcpd ctl registrations ...`.
//!
//! Wire form (the body of `POST /v1/registrations`; `GET /v1/registrations` is `show` without
//! `select`):
//! `{"op":"add","registration":{...}}`, `{"op":"modify","select":{"mac":"..."},
//! "registration":{...}}`, `{"op":"remove","select":{"client-id":"01..."}}`,
//! `{"op":"show","select":...}` (without `select`: the count), `{"op":"import",
//! "path":"/abs/file.csv","format":"csv","replace":false}`, `{"op":"export","path":...}`.
//! Import and export name a file the daemon reads or writes (the socket is the operator's
//! only, 0600), so a million registrations do not pass through one request line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use xdhcpd_registrations::import::{self, Format};
use xdhcpd_registrations::record::{parse_hex, parse_mac};
use xdhcpd_registrations::{Json, Registration, Selector, StoreError};

use super::SharedStore;
use crate::control::{Handler, Request, Response};

/// Largest bulk file read (about 5 million registrations).
const MAX_IMPORT_BYTES: u64 = 1 << 30;

/// One registration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum RegRequest {
    /// Add (or replace the registration with the same MAC / client id).
    Add { registration: Json },
    /// Replace the registration `select` names by `registration`.
    Modify {
        select: Selector,
        registration: Json,
    },
    /// Remove the registration `select` names.
    Remove { select: Selector },
    /// One registration, or (no selector) how many there are.
    Show {
        #[serde(default)]
        select: Option<Selector>,
    },
    /// Bulk import of a CSV or JSON Lines file the daemon reads.
    Import {
        path: PathBuf,
        /// `csv` or `jsonl`; default: from the file name.
        #[serde(default)]
        format: Option<String>,
        /// The store holds exactly the file's registrations afterwards.
        #[serde(default)]
        replace: bool,
    },
    /// Every registration to a file the daemon writes (0600).
    Export {
        path: PathBuf,
        #[serde(default)]
        format: Option<String>,
    },
}

/// What an import answers (`data` of the response).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportAnswer {
    #[serde(flatten)]
    pub report: xdhcpd_registrations::ImportReport,
    /// Reading and checking the file.
    pub parse_ms: f64,
    /// Writing the change durably (one log record, fsync) and applying it to the index the
    /// workers read: the time until the new registrations are served.
    pub apply_ms: f64,
}

/// Answers registration requests with `store` (None: not configured) and passes every
/// other request to `inner`.
pub fn handler(store: Option<SharedStore>, inner: Handler) -> Handler {
    std::sync::Arc::new(move |req: Request| match req {
        Request::Registrations { request } => match &store {
            Some(s) => handle(s, *request),
            None => Response::error(
                "registrations are not configured on this server (server.registration-file)",
            ),
        },
        other => inner(other),
    })
}

/// Refuses the requests that change registrations (`why`: where they are changed instead);
/// `show` and `export` pass to `h`.
pub fn read_only(h: Handler, why: &'static str) -> Handler {
    std::sync::Arc::new(move |req: Request| match &req {
        Request::Registrations { request }
            if matches!(
                **request,
                RegRequest::Add { .. }
                    | RegRequest::Modify { .. }
                    | RegRequest::Remove { .. }
                    | RegRequest::Import { .. }
            ) =>
        {
            Response::error(why)
        }
        _ => h(req),
    })
}

fn ok_data(message: String, data: serde_json::Value) -> Response {
    let mut r = Response::message(message);
    r.data = Some(data);
    r
}

fn store_err(e: StoreError) -> Response {
    Response::error(e.to_string())
}

fn format_of(path: &Path, f: Option<&str>) -> Result<Format, String> {
    match f {
        None => Ok(Format::from_path(&path.to_string_lossy())),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "json" | "jsonlines") => Ok(Format::JsonLines),
        Some(o) => Err(format!("format {o:?}: expected csv or jsonl")),
    }
}

/// Handles one request (control thread; the store's mutex is held for its duration, the
/// workers never take it).
pub fn handle(store: &SharedStore, req: RegRequest) -> Response {
    let mut s = match store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    match req {
        RegRequest::Add { registration } => {
            let r = match Registration::from_json(&registration) {
                Ok(r) => r,
                Err(e) => return Response::error(e.to_string()),
            };
            match s.put(r) {
                Ok(old) if old.is_empty() => Response::message("registered"),
                Ok(old) => Response::message(format!("registered (replaced {})", old.len())),
                Err(e) => store_err(e),
            }
        }
        RegRequest::Modify {
            select,
            registration,
        } => {
            let r = match Registration::from_json(&registration) {
                Ok(r) => r,
                Err(e) => return Response::error(e.to_string()),
            };
            match s.modify(&select, r) {
                Ok(_) => Response::message("modified"),
                Err(e) => store_err(e),
            }
        }
        RegRequest::Remove { select } => match s.remove(&select) {
            Ok(Some(_)) => Response::message("removed"),
            Ok(None) => Response::error("not registered"),
            Err(e) => store_err(e),
        },
        RegRequest::Show { select: None } => {
            let n = s.index().len();
            ok_data(
                format!("{n} registrations"),
                serde_json::json!({ "count": n }),
            )
        }
        RegRequest::Show { select: Some(sel) } => {
            let key = match sel.key() {
                Ok(k) => k,
                Err(e) => return Response::error(e.to_string()),
            };
            match s.get(&key) {
                Some(r) => match serde_json::to_value(r.to_json()) {
                    Ok(v) => ok_data("registered".into(), v),
                    Err(e) => Response::error(e.to_string()),
                },
                None => Response::error("not registered"),
            }
        }
        RegRequest::Import {
            path,
            format,
            replace,
        } => {
            let t0 = Instant::now();
            let format = match format_of(&path, format.as_deref()) {
                Ok(f) => f,
                Err(e) => return Response::error(e),
            };
            let text = match read_limited(&path) {
                Ok(t) => t,
                Err(e) => return Response::error(format!("{e:#}")),
            };
            let regs = match import::parse(&path.display().to_string(), &text, format) {
                Ok(r) => r,
                Err(e) => return Response::error(e.to_string()),
            };
            drop(text);
            let parse_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t1 = Instant::now();
            let report = match s.import(regs, replace) {
                Ok(r) => r,
                Err(e) => return store_err(e),
            };
            let apply_ms = t1.elapsed().as_secs_f64() * 1e3;
            tracing::info!(
                "registrations: imported {} from {} ({} replaced, {} removed, {} now) in {:.0} ms + {:.0} ms",
                report.imported,
                path.display(),
                report.replaced,
                report.removed,
                report.total,
                parse_ms,
                apply_ms
            );
            let a = ImportAnswer {
                report,
                parse_ms,
                apply_ms,
            };
            let msg = format!(
                "imported {} ({} replaced, {} removed; {} registrations) in {:.0} ms (parse {:.0} ms, apply {:.0} ms)",
                a.report.imported,
                a.report.replaced,
                a.report.removed,
                a.report.total,
                parse_ms + apply_ms,
                parse_ms,
                apply_ms
            );
            match serde_json::to_value(&a) {
                Ok(v) => ok_data(msg, v),
                Err(e) => Response::error(e.to_string()),
            }
        }
        RegRequest::Export { path, format } => {
            let format = match format_of(&path, format.as_deref()) {
                Ok(f) => f,
                Err(e) => return Response::error(e),
            };
            let all = s.index().all();
            drop(s);
            let text = match format {
                Format::Csv => import::to_csv(&all),
                Format::JsonLines => import::to_jsonl(&all),
            };
            match write_private(&path, text.as_bytes()) {
                Ok(()) => ok_data(
                    format!("exported {} registrations to {}", all.len(), path.display()),
                    serde_json::json!({ "exported": all.len() }),
                ),
                Err(e) => Response::error(format!("{e:#}")),
            }
        }
    }
}

fn read_limited(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.len() > MAX_IMPORT_BYTES {
        bail!(
            "{}: {} bytes, more than the {} accepted",
            path.display(),
            meta.len(),
            MAX_IMPORT_BYTES
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// `xdhcpd ctl registrations`

/// Which registration: by MAC or by client id.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SelectArgs {
    /// MAC address (aa:bb:cc:dd:ee:ff).
    #[arg(long)]
    pub mac: Option<String>,
    /// Client identifier (option 61, hex, type byte included).
    #[arg(long)]
    pub client_id: Option<String>,
}

impl SelectArgs {
    fn selector(&self) -> anyhow::Result<Selector> {
        match (&self.mac, &self.client_id) {
            (Some(m), _) => {
                parse_mac(m).map_err(anyhow::Error::msg)?;
                Ok(Selector::Mac(m.clone()))
            }
            (None, Some(c)) => {
                parse_hex(c).map_err(anyhow::Error::msg)?;
                Ok(Selector::ClientId(c.clone()))
            }
            (None, None) => bail!("name the registration with --mac or --client-id"),
        }
    }
}

/// The fields of a registration on the command line.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FieldArgs {
    /// The group (class name) the client belongs to.
    #[arg(long)]
    pub group: Option<String>,
    /// The address the client always gets.
    #[arg(long)]
    pub fixed_address: Option<String>,
    /// modify: drop the fixed address.
    #[arg(long)]
    pub no_fixed_address: bool,
    /// Option 12.
    #[arg(long)]
    pub host_name: Option<String>,
    /// siaddr.
    #[arg(long)]
    pub next_server: Option<String>,
    /// The BOOTP file field.
    #[arg(long)]
    pub boot_file: Option<String>,
    /// Another option, CODE=HEX (repeatable); on modify, replaces the same code.
    #[arg(long = "option")]
    pub options: Vec<String>,
}

impl FieldArgs {
    fn apply(&self, j: &mut Json) -> anyhow::Result<()> {
        if let Some(g) = &self.group {
            j.group.clone_from(g);
        }
        if self.no_fixed_address {
            j.fixed_address = None;
        }
        if let Some(a) = &self.fixed_address {
            j.fixed_address = Some(a.clone());
        }
        if let Some(h) = &self.host_name {
            j.host_name = Some(h.clone());
        }
        if let Some(n) = &self.next_server {
            j.next_server = Some(n.clone());
        }
        if let Some(b) = &self.boot_file {
            j.boot_file = Some(b.clone());
        }
        for o in &self.options {
            let Some((c, v)) = o.split_once('=') else {
                bail!("--option {o:?}: expected CODE=HEX");
            };
            j.options.insert(c.to_string(), v.to_string());
        }
        // Every field checked here, with its name, before the daemon sees it.
        Registration::from_json(j).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// `xdhcpd ctl registrations ...`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum RegistrationsCtl {
    /// Register a client (replaces a registration with the same MAC or client id).
    Add {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// Change fields of a registration (the others are kept).
    Modify {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// Remove a registration.
    Remove {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Show one registration (JSON), or without --mac / --client-id the count.
    Show {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Bulk import a CSV (header row) or JSON Lines file; all or nothing.
    Import {
        file: PathBuf,
        /// csv or jsonl (default: from the file name, .csv = CSV).
        #[arg(long)]
        format: Option<String>,
        /// Afterwards the store holds exactly the file's registrations.
        #[arg(long)]
        replace: bool,
    },
    /// Write every registration to a file (CSV or JSON Lines by name or --format).
    Export {
        file: PathBuf,
        #[arg(long)]
        format: Option<String>,
    },
}

/// Runs one `xdhcpd ctl registrations` command against the daemon's API at `ep`.
pub fn run(ep: crate::api::client::Endpoint, cmd: RegistrationsCtl) -> anyhow::Result<ExitCode> {
    let absolute = |p: &Path| -> anyhow::Result<PathBuf> {
        if p.is_absolute() {
            Ok(p.to_path_buf())
        } else {
            Ok(std::env::current_dir()?.join(p))
        }
    };
    let request = match cmd {
        RegistrationsCtl::Add { select, fields } => {
            let mut j = Json {
                mac: select.mac.clone(),
                client_id: select.client_id.clone(),
                ..Default::default()
            };
            fields.apply(&mut j)?;
            RegRequest::Add { registration: j }
        }
        RegistrationsCtl::Modify { select, fields } => {
            let sel = select.selector()?;
            let resp = send(
                &ep,
                RegRequest::Show {
                    select: Some(sel.clone()),
                },
            )?;
            if !resp.ok {
                bail!("{}", resp.error.unwrap_or_default());
            }
            let mut j: Json = serde_json::from_value(resp.data.unwrap_or_default())
                .context("the daemon's answer to show")?;
            fields.apply(&mut j)?;
            RegRequest::Modify {
                select: sel,
                registration: j,
            }
        }
        RegistrationsCtl::Remove { select } => RegRequest::Remove {
            select: select.selector()?,
        },
        RegistrationsCtl::Show { select } => RegRequest::Show {
            select: if select.mac.is_none() && select.client_id.is_none() {
                None
            } else {
                Some(select.selector()?)
            },
        },
        RegistrationsCtl::Import {
            file,
            format,
            replace,
        } => RegRequest::Import {
            path: absolute(&file)?,
            format,
            replace,
        },
        RegistrationsCtl::Export { file, format } => RegRequest::Export {
            path: absolute(&file)?,
            format,
        },
    };
    let show = matches!(request, RegRequest::Show { select: Some(_) });
    let resp = send(&ep, request)?;
    if !resp.ok {
        eprintln!(
            "xdhcpd ctl: {}",
            resp.error.as_deref().unwrap_or("request failed")
        );
        return Ok(ExitCode::FAILURE);
    }
    match (&resp.data, show) {
        (Some(d), true) => println!("{}", serde_json::to_string(d)?),
        _ => println!("{}", resp.message.as_deref().unwrap_or("ok")),
    }
    Ok(ExitCode::SUCCESS)
}

fn send(ep: &crate::api::client::Endpoint, request: RegRequest) -> anyhow::Result<Response> {
    let body = serde_json::to_vec(&request)?;
    // A bulk import of millions takes seconds.
    let a = crate::api::client::call_with_timeout(
        ep,
        "POST",
        "/v1/registrations",
        Some(&body),
        Duration::from_secs(600),
    )?;
    // Refusals come as the same response with `ok: false` (409); other errors as
    // `{"error": ...}`.
    match serde_json::from_slice::<Response>(&a.body) {
        Ok(r) => Ok(r),
        Err(_) => Ok(Response::error(format!("{} ({})", a.reason(), a.status))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use xdhcpd_registrations::Store;

    fn store() -> (tempfile::TempDir, SharedStore) {
        let d = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(&d.path().join("regs")).unwrap();
        (d, Arc::new(Mutex::new(s)))
    }

    /// One request as the API hands it over: the JSON form parsed, then the handler.
    fn wire(line: &str, h: &Handler) -> Response {
        match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => h(req),
            Err(e) => Response::error(format!("bad request: {e}")),
        }
    }

    #[test]
    fn registration_requests_over_the_control_protocol() {
        let (d, s) = store();
        let h = handler(Some(s.clone()), Arc::new(|_| Response::error("inner")));
        let r = wire(
            r#"{"cmd":"registrations","request":{"op":"add","registration":{"mac":"00:11:22:33:44:55","group":"modem","fixed-address":"10.0.0.5"}}}"#,
            &h,
        );
        assert!(r.ok, "{r:?}");
        let r = wire(
            r#"{"cmd":"registrations","request":{"op":"show","select":{"mac":"00:11:22:33:44:55"}}}"#,
            &h,
        );
        assert_eq!(r.data.unwrap()["fixed-address"], "10.0.0.5");
        // Bad field: named.
        let r = wire(
            r#"{"cmd":"registrations","request":{"op":"add","registration":{"mac":"00:11:22:33:44:56","group":"m","fixed-address":"10.0.0.5"}}}"#,
            &h,
        );
        assert!(!r.ok);
        assert!(r
            .error
            .unwrap()
            .starts_with("fixed-address: 10.0.0.5 is the fixed address of 00:11:22:33:44:55"));
        // Import with a positioned error: nothing imported.
        let bad = d.path().join("bad.csv");
        std::fs::write(&bad, "mac,group\n00:11:22:33:44:57,cpe\nxx,cpe\n").unwrap();
        let req = serde_json::json!({"cmd":"registrations","request":{"op":"import","path":bad}});
        let r = wire(&req.to_string(), &h);
        assert!(!r.ok);
        assert_eq!(
            r.error.unwrap(),
            format!("{}:3: mac: \"xx\" is not a MAC address", bad.display())
        );
        let good = d.path().join("good.jsonl");
        std::fs::write(&good, "{\"mac\":\"00:11:22:33:44:57\",\"group\":\"cpe\"}\n").unwrap();
        let req = serde_json::json!({"cmd":"registrations","request":{"op":"import","path":good}});
        let r = wire(&req.to_string(), &h);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data.unwrap()["total"], 2);
        // Export, and other requests go to the inner handler.
        let out = d.path().join("out.csv");
        let req = serde_json::json!({"cmd":"registrations","request":{"op":"export","path":out}});
        assert!(wire(&req.to_string(), &h).ok);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let r = wire(r#"{"cmd":"failover-status"}"#, &h);
        assert_eq!(r.error.as_deref(), Some("inner"));
        // Not configured.
        let h = handler(None, Arc::new(|_| Response::error("inner")));
        let r = wire(r#"{"cmd":"registrations","request":{"op":"show"}}"#, &h);
        assert!(r.error.unwrap().contains("server.registration-file"));
    }
}
