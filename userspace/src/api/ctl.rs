//! `xdhcpd ctl ...`: every API operation from the command line, over the control socket
//! (or `--url http://ADDR:PORT` with `--token-file`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::client::{call, Answer, Endpoint};
use crate::clock::unix_now;
use crate::control::{self, FailoverStatus};
use crate::failover::{format_events, format_status, resolve_socket, FailoverCtl};

/// Where `ctl` finds the API.
#[derive(clap::Args, Clone, Debug)]
pub struct CtlTarget {
    /// Control socket (default: from --config, else the only /run/xdhcpd-*.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Configuration file whose `server.control-socket` / interface names the socket.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The API's TCP listener instead of the socket: `http://127.0.0.1:8067`.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// File holding the bearer token for --url.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// `xdhcpd ctl ...` subcommands.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum CtlCmd {
    /// Version, uptime, interface, data path, failover state.
    Status,
    /// Counters: DHCP messages, drops, per queue, XDP, commit.
    Stats,
    /// Per-pool utilisation.
    Pools,
    /// Per-subnet utilisation.
    Subnets,
    /// The lease record(s) of an address, a MAC address or a client identifier (live table).
    #[command(group(clap::ArgGroup::new("key").required(true).args(["ip", "mac", "client_id"])))]
    Lease {
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        #[arg(long)]
        mac: Option<String>,
        /// Option 61 value in hex, type octet first (`01:aa:bb:..`).
        #[arg(long)]
        client_id: Option<String>,
    },
    /// One page of a pool's leases (JSON); `next` is the `--after` of the next page.
    Leases {
        #[arg(long)]
        pool: u32,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        after: Option<Ipv4Addr>,
        /// Comma separated states (default: every state but free).
        #[arg(long)]
        state: Option<String>,
    },
    /// Apply the configuration file again (validated first; a rejected one changes nothing).
    Reload {
        /// Print the answer as JSON (also a refusal, on stdout, with its details).
        #[arg(long)]
        json: bool,
    },
    /// Who held an address at a given time (reads the lease event log files, also while the
    /// daemon is stopped).
    History(crate::events::history::HistoryArgs),
    /// The servers seen through the PostgreSQL event archive (`xdhcpd events archive`):
    /// name, server-id, failover relationship and role, first/last event, event counts.
    Servers(crate::events::archive::ServersArgs),
    /// Registrations (MAC / client id -> group, fixed address, options): add, modify,
    /// remove, show, import, export while the server runs.
    Registrations {
        #[command(subcommand)]
        cmd: crate::registrations::ctl::RegistrationsCtl,
    },
    /// Server-initiated reconfiguration (FORCERENEW, DHCPv6 Reconfigure): queue bound
    /// clients by one selector, or (`--status`) show progress and counters.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["ip", "mac", "client_id", "duid", "pool", "subnet", "link", "class", "all", "status"])))]
    Reconfigure {
        /// An IPv4 address, or an IPv6 address (the DHCPv6 client holding it, or a
        /// delegated prefix containing it).
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        #[arg(long)]
        mac: Option<String>,
        /// Option 61 value in hex, type octet first.
        #[arg(long)]
        client_id: Option<String>,
        /// DHCPv6 client DUID in hex.
        #[arg(long)]
        duid: Option<String>,
        /// Pool id.
        #[arg(long)]
        pool: Option<u32>,
        /// Network `a.b.c.d/len` or IPv6 `prefix/len`: every binding inside it.
        #[arg(long)]
        subnet: Option<String>,
        /// DHCPv6 link: every client of the `[[subnet6]]` at this position (0-based).
        #[arg(long)]
        link: Option<u16>,
        /// DHCPv4: every binding whose client is a member of this `[[class]]` (judged from
        /// the binding: MAC, client id, stored option 82, relay, registration group).
        #[arg(long)]
        class: Option<String>,
        /// Every bound client.
        #[arg(long)]
        all: bool,
        /// Progress and counters only.
        #[arg(long)]
        status: bool,
    },
    /// Print the Prometheus metrics text.
    Metrics,
    /// Failover relationship: status and operator commands.
    Failover {
        /// Which relationship (its `[[failover]]` name); needed when the server has several
        /// (N:1 backup).
        #[arg(long, global = true)]
        relationship: Option<String>,
        #[command(subcommand)]
        cmd: FailoverCtl,
    },
}

/// Runs `xdhcpd ctl`.
pub fn main_ctl(target: CtlTarget, cmd: CtlCmd) -> ExitCode {
    match ctl(target, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xdhcpd ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn endpoint(t: &CtlTarget) -> anyhow::Result<Endpoint> {
    if let Some(u) = &t.url {
        let hostport = u.strip_prefix("http://").unwrap_or(u).trim_end_matches('/');
        let addr: SocketAddr = hostport
            .parse()
            .with_context(|| format!("--url {u}: expected http://IP:PORT"))?;
        let token = match &t.token_file {
            Some(p) => Some(super::read_token(p)?),
            None => None,
        };
        return Ok(Endpoint::Tcp(addr, token));
    }
    Ok(Endpoint::Unix(resolve_socket(
        t.socket.clone(),
        t.config.as_deref(),
    )?))
}

/// The method, path and body of a failover command (without the relationship).
fn failover_request(cmd: &FailoverCtl) -> anyhow::Result<(&'static str, String, Option<Vec<u8>>)> {
    Ok(match cmd {
        FailoverCtl::Status { .. } | FailoverCtl::Events { .. } => {
            ("GET", "/v1/failover".into(), None)
        }
        FailoverCtl::Failback => ("POST", "/v1/failover/failback".into(), None),
        FailoverCtl::PartnerDown { since, force } => {
            let since = match since {
                Some(s) => Some(control::parse_since(s, unix_now()).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let b = serde_json::json!({ "since": since, "force": force });
            (
                "POST",
                "/v1/failover/partner-down".into(),
                Some(serde_json::to_vec(&b)?),
            )
        }
        FailoverCtl::Recover => ("POST", "/v1/failover/recover".into(), None),
        FailoverCtl::Pause => ("POST", "/v1/failover/pause".into(), None),
        FailoverCtl::Relays { all, .. } => (
            "GET",
            format!("/v1/failover/relays{}", if *all { "?all=true" } else { "" }),
            None,
        ),
    })
}

/// Percent-encodes a query value (a relationship name may hold any character).
fn query_escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(char::from(b));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn ctl(target: CtlTarget, cmd: CtlCmd) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        CtlCmd::History(a) => return Ok(crate::events::history::main_history(target.config, a)),
        CtlCmd::Servers(a) => return Ok(crate::events::archive::main_servers(a)),
        CtlCmd::Registrations { cmd } => {
            return crate::registrations::ctl::run(endpoint(&target)?, cmd);
        }
        other => other,
    };
    // Validate arguments before touching the socket.
    let (method, path, body): (&str, String, Option<Vec<u8>>) = match &cmd {
        CtlCmd::Status => ("GET", "/v1/status".into(), None),
        CtlCmd::Stats => ("GET", "/v1/statistics".into(), None),
        CtlCmd::Pools => ("GET", "/v1/pools".into(), None),
        CtlCmd::Subnets => ("GET", "/v1/subnets".into(), None),
        CtlCmd::Lease { ip, mac, client_id } => {
            let p = match (ip, mac, client_id) {
                (Some(ip), _, _) => format!("/v1/leases/ip/{ip}"),
                (_, Some(m), _) => {
                    super::request::parse_mac(m).map_err(anyhow::Error::msg)?;
                    format!("/v1/leases/mac/{}", m.replace(':', "-"))
                }
                (_, _, Some(c)) => {
                    super::request::parse_client_id(c).map_err(anyhow::Error::msg)?;
                    format!("/v1/leases/client-id/{}", c.replace(':', "-"))
                }
                _ => anyhow::bail!("give --ip, --mac or --client-id"),
            };
            ("GET", p, None)
        }
        CtlCmd::Leases {
            pool,
            limit,
            after,
            state,
        } => {
            let mut p = format!("/v1/pools/{pool}/leases?limit={limit}");
            if let Some(a) = after {
                p.push_str(&format!("&after={a}"));
            }
            if let Some(s) = state {
                p.push_str(&format!("&state={}", s.replace(',', "%2C")));
            }
            ("GET", p, None)
        }
        CtlCmd::Reload { .. } => ("POST", "/v1/reload".into(), None),
        CtlCmd::History(_) | CtlCmd::Servers(_) | CtlCmd::Registrations { .. } => {
            anyhow::bail!("answered above")
        }
        CtlCmd::Metrics => ("GET", "/metrics".into(), None),
        CtlCmd::Reconfigure { status: true, .. } => ("GET", "/v1/reconfigure".into(), None),
        CtlCmd::Reconfigure {
            ip,
            mac,
            client_id,
            duid,
            pool,
            subnet,
            link,
            class,
            all,
            ..
        } => {
            let b = match (ip, mac, client_id, duid, pool, subnet, link) {
                (Some(ip), ..) => serde_json::json!({ "ip": ip.to_string() }),
                (_, Some(m), ..) => serde_json::json!({ "mac": m }),
                (_, _, Some(c), ..) => serde_json::json!({ "client-id": c }),
                (_, _, _, Some(d), ..) => serde_json::json!({ "duid": d }),
                (_, _, _, _, Some(p), ..) => serde_json::json!({ "pool": p }),
                (_, _, _, _, _, Some(n), _) => serde_json::json!({ "subnet": n }),
                (.., Some(l)) => serde_json::json!({ "link": l }),
                _ if class.is_some() => serde_json::json!({ "class": class }),
                _ if *all => serde_json::json!({ "all": true }),
                _ => anyhow::bail!(
                    "give --ip, --mac, --client-id, --duid, --pool, --subnet, --link, --class or --all"
                ),
            };
            let body = serde_json::to_vec(&b)?;
            // Checked here too, so a bad selector never reaches the daemon.
            super::request::parse_reconfigure(&body).map_err(anyhow::Error::msg)?;
            ("POST", "/v1/reconfigure".into(), Some(body))
        }
        CtlCmd::Failover { cmd, relationship } => {
            let (method, path, body) = failover_request(cmd)?;
            match (relationship, cmd) {
                // The relay table is the server's, not a relationship's.
                (Some(r), c) if !matches!(c, FailoverCtl::Relays { .. }) => (
                    method,
                    format!("{path}?relationship={}", query_escape(r)),
                    body,
                ),
                _ => (method, path, body),
            }
        }
    };
    let ep = endpoint(&target)?;
    let a = call(&ep, method, &path, body.as_deref())?;
    if let (CtlCmd::Reload { json: true }, true) = (&cmd, a.status == 409) {
        println!("{}", serde_json::to_string_pretty(&a.json()?)?);
        return Ok(ExitCode::FAILURE);
    }
    if a.status >= 400 {
        eprintln!("xdhcpd ctl: {} ({})", a.reason(), a.status);
        return Ok(ExitCode::FAILURE);
    }
    print_answer(&cmd, &a)?;
    Ok(ExitCode::SUCCESS)
}

/// `ctl failover relays` as a table: one line per relay.
fn format_relays(v: &serde_json::Value) -> String {
    let secs = |x: &serde_json::Value| match x.as_u64() {
        Some(n) => format!("{n}s"),
        None => "-".to_string(),
    };
    let empty = Vec::new();
    let relays = v["relays"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    if relays.is_empty() {
        out.push_str("no relay seems cut off from the failover partner\n");
    } else {
        out.push_str(&format!(
            "{:<16} {:<12} {:>10} {:>14} {:>10} {:>10} {:>9}\n",
            "relay", "state", "heard", "partner-heard", "unanswered", "takeover", "served"
        ));
        for r in relays {
            out.push_str(&format!(
                "{:<16} {:<12} {:>10} {:>14} {:>10} {:>10} {:>9}\n",
                r["relay"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?"),
                secs(&r["last_heard_secs_ago"]),
                secs(&r["partner_heard_secs_ago"]),
                r["unanswered_discovers"].as_u64().unwrap_or(0),
                secs(&r["takeover_secs"]),
                r["served_for_partner"].as_u64().unwrap_or(0),
            ));
        }
    }
    out.push_str(&format!(
        "takeovers since start: {}; relays not followed (table full): {}\n",
        v["takeovers"].as_u64().unwrap_or(0),
        v["table_full"].as_u64().unwrap_or(0)
    ));
    out
}

fn print_answer(cmd: &CtlCmd, a: &Answer) -> anyhow::Result<()> {
    match cmd {
        CtlCmd::Metrics => print!("{}", String::from_utf8_lossy(&a.body)),
        CtlCmd::Failover {
            cmd: FailoverCtl::Status { json: false },
            ..
        } => {
            let s: FailoverStatus =
                serde_json::from_slice(&a.body).context("failover status answer")?;
            print!("{}", format_status(&s, unix_now()));
        }
        // The shape `--json` always had: `{"ok": true, "status": {...}}`.
        CtlCmd::Failover {
            cmd: FailoverCtl::Status { json: true },
            ..
        } => {
            let v = serde_json::json!({ "ok": true, "status": a.json()? });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        CtlCmd::Failover {
            cmd:
                FailoverCtl::PartnerDown { .. }
                | FailoverCtl::Recover
                | FailoverCtl::Pause
                | FailoverCtl::Failback,
            ..
        } => {
            let v = a.json()?;
            println!(
                "{}",
                v.get("message").and_then(|m| m.as_str()).unwrap_or("")
            );
        }
        CtlCmd::Failover {
            cmd: FailoverCtl::Relays { json: false, .. },
            ..
        } => print!("{}", format_relays(&a.json()?)),
        CtlCmd::Failover {
            cmd: FailoverCtl::Events { json: false },
            ..
        } => {
            let s: FailoverStatus =
                serde_json::from_slice(&a.body).context("failover status answer")?;
            print!("{}", format_events(&s));
        }
        CtlCmd::Failover {
            cmd: FailoverCtl::Events { json: true },
            ..
        } => {
            let v = a.json()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "events": v["events"],
                    "events_total": v["events_total"],
                }))?
            );
        }
        _ => println!("{}", serde_json::to_string_pretty(&a.json()?)?),
    }
    Ok(())
}
