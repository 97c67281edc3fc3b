//! The failover guard of `--io udp` mode: nftables rules that drop TCP to the failover port
//! from anyone but the configured partner, the kernel-side twin of the XDP program's guard.
//!
//! At start the daemon loads (with `nft -f -`, in its own network namespace) one table,
//! `inet xdhcpd_failover_<port>`, with an input-hook chain at priority -150 (before the usual
//! filter tables) whose rules drop TCP to the port from every other source address, IPv4 and
//! IPv6, counting what they drop. Fragments are reassembled before the input hook, so no
//! extension-header or fragment trick reaches the port. At shutdown the table is deleted. A
//! table left by a daemon that crashed keeps guarding the port and is replaced at the next
//! start (same name). Without the `nft` program (Debian package nftables) or without
//! CAP_NET_ADMIN the daemon refuses to start in UDP mode with failover (the error says why).

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::Context;

/// The table installed for one failover port; deleted on drop.
#[derive(Debug)]
pub struct NftGuard {
    table: String,
}

/// The nftables ruleset for `port`, admitting only `peers` (every relationship's partner).
pub fn ruleset(table: &str, port: u16, peers: &[IpAddr]) -> String {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in peers {
        match p.to_canonical() {
            IpAddr::V4(a) if !v4.contains(&a.to_string()) => v4.push(a.to_string()),
            IpAddr::V6(a) if !v6.contains(&a.to_string()) => v6.push(a.to_string()),
            _ => {}
        }
    }
    // One address as it always was written; several as an anonymous set.
    let set = |v: &[String]| match v {
        [one] => one.clone(),
        many => format!("{{ {} }}", many.join(", ")),
    };
    let rule = |family: &str, saddr: &str, v: &[String]| {
        if v.is_empty() {
            format!("meta nfproto {family} tcp dport {port} counter drop")
        } else {
            format!(
                "meta nfproto {family} tcp dport {port} {saddr} saddr != {} counter drop",
                set(v)
            )
        }
    };
    format!(
        "table inet {table} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -150; policy accept;\n\
         \t\t{}\n\
         \t\t{}\n\
         \t}}\n\
         }}\n",
        rule("ipv4", "ip", &v4),
        rule("ipv6", "ip6", &v6)
    )
}

fn nft(args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (Debian package nftables)")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .context("writing the ruleset to nft")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        anyhow::bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NftGuard {
    /// Installs the guard for `port` (replacing a table a crashed daemon left).
    pub fn install(port: u16, peers: &[IpAddr]) -> anyhow::Result<NftGuard> {
        let table = format!("xdhcpd_failover_{port}");
        // A stale table of the same name: delete first (absent is fine).
        let _ = nft(&["delete", "table", "inet", &table], None);
        nft(&["-f", "-"], Some(&ruleset(&table, port, peers))).with_context(|| {
            format!("installing the nftables failover guard for TCP port {port}")
        })?;
        tracing::info!(
            "failover guard (UDP mode): nftables table inet {table} drops TCP to port {port} \
             from anyone but {peers:?}"
        );
        Ok(NftGuard { table })
    }
}

impl Drop for NftGuard {
    fn drop(&mut self) {
        match nft(&["delete", "table", "inet", &self.table], None) {
            Ok(()) => tracing::info!("failover guard: nftables table {} removed", self.table),
            Err(e) => tracing::warn!("failover guard: removing {}: {e:#}", self.table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_auth_nft_ruleset_admits_only_the_peer() {
        let r = ruleset("t", 647, &["10.0.0.2".parse().unwrap()]);
        assert!(
            r.contains("meta nfproto ipv4 tcp dport 647 ip saddr != 10.0.0.2 counter drop"),
            "{r}"
        );
        assert!(
            r.contains("meta nfproto ipv6 tcp dport 647 counter drop"),
            "{r}"
        );
        let r = ruleset("t", 700, &["fd00::2".parse().unwrap()]);
        assert!(
            r.contains("meta nfproto ipv6 tcp dport 700 ip6 saddr != fd00::2 counter drop"),
            "{r}"
        );
        assert!(
            r.contains("meta nfproto ipv4 tcp dport 700 counter drop"),
            "{r}"
        );
        // An IPv4-mapped peer is an IPv4 peer.
        let r = ruleset("t", 647, &["::ffff:10.0.0.2".parse().unwrap()]);
        assert!(r.contains("ip saddr != 10.0.0.2"), "{r}");
    }

    /// N:1: every relationship's partner passes, anyone else is dropped.
    #[test]
    fn failover_n1_nft_ruleset_admits_every_peer() {
        let peers: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let r = ruleset("t", 647, &peers);
        assert!(
            r.contains(
                "meta nfproto ipv4 tcp dport 647 ip saddr != { 10.0.0.1, 10.0.0.2 } counter drop"
            ),
            "{r}"
        );
        assert!(
            r.contains("meta nfproto ipv6 tcp dport 647 ip6 saddr != fd00::1 counter drop"),
            "{r}"
        );
    }
}
