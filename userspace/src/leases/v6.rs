//! `xdhcpd leases dump6`: the DHCPv6 bindings (address and prefix) of the v6 binding file,
//! read without locking or changing it (a running daemon's file too).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use lease_store::v6::{read_file, Binding6, IaKind};

use super::Refused;

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One binding as a JSON object.
pub fn binding_json(b: &Binding6) -> serde_json::Value {
    serde_json::json!({
        "type": match b.kind { IaKind::Na => "ia_na", IaKind::Pd => "ia_pd" },
        "address": if b.kind == IaKind::Na { b.ip().to_string() } else { format!("{}/{}", b.ip(), b.prefix_len) },
        "state": b.state.name(),
        "duid": hex(b.duid.as_slice()),
        "iaid": b.iaid,
        "link": b.link,
        "cltt": b.cltt,
        "preferred": b.preferred,
        "valid": b.valid,
        "expiry": b.expiry,
        "state_start": b.state_start,
        "acked_expiry": b.acked_expiry,
        "owner": format!("{:?}", b.owner).to_lowercase(),
        "reconfigure_accept": b.flags & lease_store::v6::FLAG_RECONFIGURE_ACCEPT != 0,
        "interface_id": hex(b.relay.interface_id.as_slice()),
        "remote_id": hex(b.relay.remote_id.as_slice()),
        "subscriber_id": hex(b.relay.subscriber_id.as_slice()),
        "client_lladdr": if b.relay.lladdr.is_empty() { String::new() } else { format!("{}:{}", b.relay.lladdr_type, hex(b.relay.lladdr.as_slice())) },
    })
}

/// Prints every binding of the v6 file (the configuration's `[dhcpv6] lease-file`, or
/// `file`) as JSON Lines; returns how many.
pub fn dump6(config: &Path, file: Option<PathBuf>, out: &mut dyn Write) -> Result<usize> {
    let path = match file {
        Some(p) => p,
        None => {
            let cfg = xdhcpd_config::load(config).map_err(|e| anyhow!(Refused(e.to_string())))?;
            cfg.v6.lease_file
        }
    };
    if !path.is_file() {
        return Err(anyhow!(Refused(format!(
            "v6 binding file {} does not exist",
            path.display()
        ))));
    }
    let (duid, bindings, bad) = read_file(&path).map_err(|e| anyhow!(Refused(e.to_string())))?;
    if let Some(d) = duid {
        eprintln!("server DUID {}", hex(&d));
    }
    if bad > 0 {
        eprintln!("{bad} damaged record(s) skipped");
    }
    for b in &bindings {
        writeln!(out, "{}", binding_json(b))?;
    }
    Ok(bindings.len())
}
