//! `[server]`: interface, data path, queues, lease file, commit mode, and who may talk to
//! the server (trusted relays, leasequery clients).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{suggest, Errors};
use crate::net::{Ipv4Net, NetParseError};
use crate::reader::{array, int_in, ipv4, parse_ipv4, string, u32_in, Field, Table};
use crate::{Account, CommitMode, IoMode, QueueSel, ServerConfig, UntrustedRelayInfo, XdpModeCfg};

use super::DEFAULT_LEASE_FILE;

/// `commit-min-gap-us` when not given (see [`ServerConfig::commit_min_gap`]).
pub const DEFAULT_COMMIT_MIN_GAP_US: u64 = 0;
/// `worker-slice-us` when not given (see [`ServerConfig::worker_slice`]).
pub const DEFAULT_WORKER_SLICE_US: u64 = 100;
/// `background-nice` when not given (see [`ServerConfig::background_nice`]).
pub const DEFAULT_BACKGROUND_NICE: u8 = 10;
/// `commit-coalesce-us` when not given (see [`ServerConfig::commit_coalesce`]).
pub const DEFAULT_COMMIT_COALESCE_US: u64 = 200;
/// `commit-coalesce-max-us` when not given (see [`ServerConfig::commit_coalesce_max`]).
pub const DEFAULT_COMMIT_COALESCE_MAX_US: u64 = 1000;

pub(super) fn read_server(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<ServerConfig> {
    let interface = t.require(errs, "interface").and_then(|f| {
        let s = string(errs, &f)?;
        match check_ifname(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                errs.push(&f.span(), &f.path, m);
                None
            }
        }
    });

    let io = keyword(
        errs,
        t,
        "io",
        &[
            ("auto", IoMode::Auto),
            ("xdp", IoMode::Xdp),
            ("udp", IoMode::Udp),
        ],
    );
    let xdp_mode = keyword(
        errs,
        t,
        "xdp-mode",
        &[
            ("auto", XdpModeCfg::Auto),
            ("driver", XdpModeCfg::Driver),
            ("native", XdpModeCfg::Driver),
            ("skb", XdpModeCfg::Skb),
            ("generic", XdpModeCfg::Skb),
        ],
    );

    let queues = match t.get("queues") {
        None => Some(QueueSel::All),
        Some(f) => match f.value() {
            toml::de::DeValue::String(s) if s.as_ref() == "all" => Some(QueueSel::All),
            toml::de::DeValue::Integer(_) => {
                u32_in(errs, &f, 1, 4096, "between 1 and 4096").map(QueueSel::First)
            }
            _ => {
                errs.push(
                    &f.span(),
                    &f.path,
                    "expected \"all\" or a number of queues (1..=4096)",
                );
                None
            }
        },
    };

    let server_id = opt_unicast(errs, t, "server-id");
    let lease_file = match t.get("lease-file") {
        None => Some(PathBuf::from(DEFAULT_LEASE_FILE)),
        Some(f) => path_value(errs, &f),
    };
    let commit = match t.get("commit") {
        None => Some(CommitMode::Ack),
        Some(f) => string(errs, &f).and_then(|s| match parse_commit(s) {
            Ok(c) => Some(c),
            Err(m) => {
                errs.push(&f.span(), &f.path, m);
                None
            }
        }),
    };
    // Only ack mode has group commits to space out.
    let commit_min_gap = match t.get("commit-min-gap-us") {
        None => Some(Duration::from_micros(DEFAULT_COMMIT_MIN_GAP_US)),
        Some(f) => match (commit, int_in(errs, &f, 0, 100_000, "0..=100000 (µs)")) {
            (Some(CommitMode::Interval(_)), Some(_)) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    "`commit-min-gap-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
                );
                None
            }
            (_, n) => n.map(|n| Duration::from_micros(n.unsigned_abs())),
        },
    };
    // The kernel takes slices of 0.1-100 ms (EEVDF, Linux 6.12+); 0 leaves its default.
    let worker_slice = match t.get("worker-slice-us") {
        None => Some(Duration::from_micros(DEFAULT_WORKER_SLICE_US)),
        Some(f) => match int_in(errs, &f, 0, 100_000, "0 or 100..=100000 (µs)") {
            Some(n) if n != 0 && n < 100 => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{n} is out of range: must be 0 or 100..=100000 (µs)"),
                );
                None
            }
            n => n.map(|n| Duration::from_micros(n.unsigned_abs())),
        },
    };
    let background_nice = match t.get("background-nice") {
        None => Some(DEFAULT_BACKGROUND_NICE),
        Some(f) => int_in(errs, &f, 0, 19, "0..=19").map(|n| n as u8),
    };
    let commit_coalesce = match t.get("commit-coalesce-us") {
        None => Some(Duration::from_micros(DEFAULT_COMMIT_COALESCE_US)),
        Some(f) => match (commit, int_in(errs, &f, 0, 10_000, "0..=10000 (µs)")) {
            (Some(CommitMode::Interval(_)), Some(_)) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    "`commit-coalesce-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
                );
                None
            }
            (_, n) => n.map(|n| Duration::from_micros(n.unsigned_abs())),
        },
    };
    let commit_coalesce_max = match t.get("commit-coalesce-max-us") {
        None => {
            commit_coalesce.map(|c| c.max(Duration::from_micros(DEFAULT_COMMIT_COALESCE_MAX_US)))
        }
        Some(f) => match (commit, int_in(errs, &f, 0, 10_000, "0..=10000 (µs)")) {
            (Some(CommitMode::Interval(_)), Some(_)) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    "`commit-coalesce-max-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
                );
                None
            }
            (_, Some(n)) => {
                let max = Duration::from_micros(n.unsigned_abs());
                match commit_coalesce {
                    Some(c) if max < c => {
                        errs.push(
                            &f.span(),
                            &f.path,
                            format!(
                                "{n} is below `commit-coalesce-us` ({}): the longest coalescing wait cannot be shorter than the shortest",
                                c.as_micros()
                            ),
                        );
                        None
                    }
                    _ => Some(max),
                }
            }
            (_, None) => None,
        },
    };
    let ebpf_object = t.get("ebpf-object").map(|f| path_value(errs, &f));
    let control_socket = t.get("control-socket").map(|f| path_value(errs, &f));
    let registration_file = t.get("registration-file").map(|f| path_value(errs, &f));
    let leasequery_allow = t.get("leasequery-allow").map(|f| address_list(errs, &f));
    let trusted_relays = t.get("trusted-relays").map(|f| address_list(errs, &f));
    let untrusted_relay_info = keyword(
        errs,
        t,
        "untrusted-relay-info",
        &[
            ("drop", UntrustedRelayInfo::Drop),
            ("strip", UntrustedRelayInfo::Strip),
        ],
    );

    let user = t.get("user").map(|f| account(errs, &f));
    let group = t.get("group").map(|f| account(errs, &f));
    if let (Some(f), None) = (t.get("group"), t.get("user")) {
        errs.push(
            &f.span(),
            &f.path,
            "`group` needs `user`: the group is switched together with the user",
        );
        return None;
    }

    Some(ServerConfig {
        interface: interface?,
        io: io?,
        xdp_mode: xdp_mode?,
        queues: queues?,
        server_id: server_id.ok()?,
        lease_file: lease_file?,
        commit: commit?,
        commit_min_gap: commit_min_gap?,
        worker_slice: worker_slice?,
        background_nice: background_nice?,
        commit_coalesce: commit_coalesce?,
        commit_coalesce_max: commit_coalesce_max?,
        ebpf_object: ebpf_object.map_or(Some(None), |p| p.map(Some))?,
        control_socket: control_socket.map_or(Some(None), |p| p.map(Some))?,
        registration_file: registration_file.map_or(Some(None), |p| p.map(Some))?,
        trusted_relays: trusted_relays.map_or(Some(None), |l| l.map(Some))?,
        untrusted_relay_info: untrusted_relay_info?,
        leasequery_allow: leasequery_allow.map_or(Some(None), |l| l.map(Some))?,
        user: user.map_or(Some(None), |a| a.map(Some))?,
        group: group.map_or(Some(None), |a| a.map(Some))?,
    })
}

/// A user or group name (`server.user`, `server.group`): the characters an account name may
/// have (no separator, space or control character), at most 32 bytes. Whether it exists is
/// for the daemon to find out (NSS); it reports an unknown name at the position kept here.
fn account(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Account> {
    let s = string(errs, f)?;
    let bad = s.is_empty()
        || s.len() > 32
        || s.starts_with('-')
        || s.chars()
            .any(|c| c == ':' || c == '/' || c == ',' || c.is_whitespace() || c.is_control());
    if bad {
        errs.push(
            &f.span(),
            &f.path,
            format!("`{s}` is not an account name (1-32 characters, no `:`, `/`, `,`, space or leading `-`)"),
        );
        return None;
    }
    Some(Account {
        name: s.to_string(),
        position: errs.position(f.span().start),
    })
}

/// A list of IPv4 addresses and networks (`"192.0.2.7"`, `"198.51.100.0/24"`); `None` if
/// the field or any element is bad (all reported). An empty list is valid: nobody.
fn address_list(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Vec<Ipv4Net>> {
    let items = array(errs, f)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for it in &items {
        let Some(s) = string(errs, it) else {
            ok = false;
            continue;
        };
        let parsed = if s.contains('/') {
            s.trim().parse::<Ipv4Net>().map_err(|e| match e {
                NetParseError::HostBits(n) => format!("{s} has host bits set; did you mean {n}?"),
                NetParseError::Syntax => {
                    format!("{s} is not an IPv4 network (expected a.b.c.d/len)")
                }
            })
        } else {
            parse_ipv4(s)
                .map(|a| Ipv4Net::truncating(a, 32))
                .ok_or_else(|| format!("{s} is not an IPv4 address or network"))
        };
        match parsed {
            Ok(n) if n.prefix() == 32 && n.addr().is_unspecified() => {
                // giaddr 0 means "not relayed": never a relay agent's address.
                errs.push(
                    &it.span(),
                    &it.path,
                    "0.0.0.0 is no relay agent's address (giaddr 0 means not relayed)",
                );
                ok = false;
            }
            Ok(n) => out.push(n),
            Err(m) => {
                errs.push(&it.span(), &it.path, m);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name is empty".into());
    }
    // IFNAMSIZ is 16 including the NUL.
    if s.len() > 15 {
        return Err(format!("interface name `{s}` is longer than 15 bytes"));
    }
    if s.contains(['/', ':'])
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
        || s == "."
        || s == ".."
    {
        return Err(format!("`{s}` is not a valid interface name"));
    }
    Ok(())
}

/// `"ack"` or `"interval:<ms>"` with 1 ..= 60000 ms.
fn parse_commit(s: &str) -> Result<CommitMode, String> {
    if s == "ack" {
        return Ok(CommitMode::Ack);
    }
    let bad =
        || format!("`{s}` is not a commit mode: expected \"ack\" or \"interval:<ms>\" (1..=60000)");
    let ms = s.strip_prefix("interval:").ok_or_else(bad)?.trim();
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match ms.parse::<u64>() {
        Ok(n) if (1..=60_000).contains(&n) => Ok(CommitMode::Interval(Duration::from_millis(n))),
        _ => Err(format!(
            "commit interval {ms} ms is out of range: must be 1..=60000"
        )),
    }
}

fn keyword<T: Copy>(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    key: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let Some(f) = t.get(key) else {
        return Some(choices[0].1);
    };
    let s = string(errs, &f)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let msg = match suggest(s, &names) {
        Some(m) => format!("`{s}` is not valid here; did you mean `{m}`?"),
        None => format!("`{s}` is not one of: {}", names.join(", ")),
    };
    errs.push(&f.span(), &f.path, msg);
    None
}

fn path_value(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<PathBuf> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, "expected a file path");
        return None;
    }
    Some(PathBuf::from(s))
}

/// An optional unicast IPv4 address: `Ok(None)` if absent, `Err(())` if bad (reported).
fn opt_unicast(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    key: &str,
) -> Result<Option<Ipv4Addr>, ()> {
    let Some(f) = t.get(key) else {
        return Ok(None);
    };
    let ip = ipv4(errs, &f).ok_or(())?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        errs.push(&f.span(), &f.path, format!("{ip} is not a unicast address"));
        return Err(());
    }
    Ok(Some(ip))
}
