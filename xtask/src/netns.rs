//! A pair of network namespaces joined by a veth pair, removed on drop.
//!
//! Names are unique per process so concurrent runs never collide; the veth
//! ends are created under temporary names and renamed inside their
//! namespaces, so the server side can carry the name the configuration uses.

use std::process::Command;

use anyhow::{bail, Result};

use crate::util;

pub struct NetnsPair {
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetnsPair {
    /// Creates `xd<tag>s<pid>` / `xd<tag>c<pid>` with a 2-queue veth pair;
    /// the server end gets `server_if` and `server_cidr`, the client end
    /// `client_if` and `client_cidr`.
    pub fn create(
        tag: &str,
        server_if: &str,
        server_cidr: &str,
        client_if: &str,
        client_cidr: &str,
    ) -> Result<Self> {
        if !util::is_root() {
            bail!("network namespaces need root (run as root)");
        }
        let pid = std::process::id();
        let pair = NetnsPair {
            server_ns: format!("xd{tag}s{pid}"),
            client_ns: format!("xd{tag}c{pid}"),
            server_if: server_if.to_string(),
            client_if: client_if.to_string(),
        };
        ip(&["netns", "add", &pair.server_ns])?;
        // From here on, Drop removes whatever exists.
        ip(&["netns", "add", &pair.client_ns])?;
        let (ta, tb) = (format!("xv{pid}a"), format!("xv{pid}b"));
        ip(&[
            "link",
            "add",
            &ta,
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            &tb,
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
        ])?;
        ip(&["link", "set", &ta, "netns", &pair.server_ns])?;
        ip(&["link", "set", &tb, "netns", &pair.client_ns])?;
        for (ns, tmp, name, cidr) in [
            (&pair.server_ns, &ta, server_if, server_cidr),
            (&pair.client_ns, &tb, client_if, client_cidr),
        ] {
            ip(&["-n", ns, "link", "set", tmp, "name", name])?;
            ip(&["-n", ns, "addr", "add", cidr, "dev", name])?;
            ip(&["-n", ns, "link", "set", name, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// `ip netns exec NS program` as a Command.
    pub fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it (and its peer).
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
