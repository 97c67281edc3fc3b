//! `xdhcpd leasequery -6`: one RFC 5007 LEASEQUERY, by address (or an address
//! inside a delegated prefix) or by client DUID, sent unicast to the server's
//! UDP 547 from an ephemeral port; the LEASEQUERY-REPLY comes back to that
//! port. Prints the client's bindings with the lifetimes left, the seconds
//! since its last transaction and the relay data its binding came through, or
//! the links to ask again on (OPTION_LQ_CLIENT_LINK), or the server's refusal.
//!
//! The requestor identifies itself with a DUID-EN (enterprise 4491, "xdhcpd-lq")
//! unless `--requestor-duid` is given; the server decides by the source address
//! (`[dhcpv6] leasequery-allow`), so `--source` picks an allowed one.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xdhcpd_dhcpv6::wire::{msg, opt, status, IaEntry, Message, Options, Relay, Writer};
use xdhcpd_dhcpv6::{duid_en, QUERY_BY_ADDRESS, QUERY_BY_CLIENTID};

use crate::lq_client::{parse_hex, LeasequeryArgs};

/// What to ask about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask6 {
    /// Who holds this address (or the delegated prefix holding it).
    Addr(Ipv6Addr),
    /// What this client (DUID) holds.
    ClientId(Vec<u8>),
}

/// A LEASEQUERY from `requestor` on `link` (:: = every link) asking for relay data.
pub fn build_query6(xid: [u8; 3], requestor: &[u8], link: Ipv6Addr, ask: &Ask6) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let mut w = Writer::new(&mut buf);
    w.header(msg::LEASEQUERY, xid);
    w.option(opt::CLIENTID, requestor);
    w.open(opt::LQ_QUERY);
    match ask {
        Ask6::Addr(a) => {
            w.bytes(&[QUERY_BY_ADDRESS]);
            w.bytes(&link.octets());
            w.open(opt::IAADDR);
            w.bytes(&a.octets());
            w.bytes(&[0; 8]);
            w.close();
        }
        Ask6::ClientId(id) => {
            w.bytes(&[QUERY_BY_CLIENTID]);
            w.bytes(&link.octets());
            w.option(opt::CLIENTID, id);
        }
    }
    w.option(opt::ORO, &opt::LQ_RELAY_DATA.to_be_bytes());
    w.close();
    let n = w.finish().context("the query does not fit 1024 bytes")?;
    buf.truncate(n);
    Ok(buf)
}

/// One binding of the answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lq6Binding {
    /// "address" (IA_NA) or "prefix" (IA_PD).
    pub kind: &'static str,
    /// The address, or the prefix as addr/len.
    pub address: String,
    pub preferred_left_s: u32,
    pub valid_left_s: u32,
}

/// The relay data of the answer (RFC 5007 OPTION_LQ_RELAY_DATA).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lq6Relay {
    pub peer_address: String,
    pub link_address: String,
    pub interface_id: Option<String>,
    pub remote_id: Option<String>,
    pub subscriber_id: Option<String>,
    pub client_linklayer: Option<String>,
}

/// The LEASEQUERY-REPLY, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lq6Answer {
    /// BINDING, NOT-FOUND, CLIENT-LINKS or the refusal's status name.
    pub answer: String,
    /// The status code's message, when there was one.
    pub message: Option<String>,
    pub client_id: Option<String>,
    pub bindings: Vec<Lq6Binding>,
    pub seconds_since_last_transaction: Option<u32>,
    pub relay: Option<Lq6Relay>,
    pub client_links: Vec<Ipv6Addr>,
}

impl Lq6Answer {
    /// The server refused the query (a status other than Success).
    pub fn refused(&self) -> bool {
        !matches!(
            self.answer.as_str(),
            "BINDING" | "NOT-FOUND" | "CLIENT-LINKS"
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text_or_hex(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        String::from_utf8_lossy(b).into_owned()
    } else {
        hex(b)
    }
}

fn status_name(code: u16) -> String {
    match code {
        status::SUCCESS => "Success".into(),
        status::UNKNOWN_QUERY_TYPE => "UnknownQueryType".into(),
        status::MALFORMED_QUERY => "MalformedQuery".into(),
        status::NOT_CONFIGURED => "NotConfigured".into(),
        status::NOT_ALLOWED => "NotAllowed".into(),
        other => format!("status {other}"),
    }
}

fn addr16(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

fn parse_relay_data(b: &[u8], at: usize) -> Result<Lq6Relay> {
    if b.len() < 16 {
        bail!("OPTION_LQ_RELAY_DATA at offset {at}: shorter than 16 bytes");
    }
    let r = Relay::parse(&b[16..], at + 16).map_err(|e| anyhow::anyhow!("relay data: {e}"))?;
    let mut out = Lq6Relay {
        peer_address: addr16(b).to_string(),
        link_address: Ipv6Addr::from(r.link).to_string(),
        ..Lq6Relay::default()
    };
    for (code, v, _) in r.options.flatten() {
        match code {
            opt::INTERFACE_ID => out.interface_id = Some(text_or_hex(v)),
            opt::REMOTE_ID if v.len() >= 4 => {
                let en = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                out.remote_id = Some(format!("{en}:{}", text_or_hex(&v[4..])));
            }
            opt::SUBSCRIBER_ID => out.subscriber_id = Some(text_or_hex(v)),
            opt::CLIENT_LINKLAYER_ADDR if v.len() >= 2 => {
                let ty = u16::from_be_bytes([v[0], v[1]]);
                let a: Vec<String> = v[2..].iter().map(|x| format!("{x:02x}")).collect();
                out.client_linklayer = Some(format!("{ty}:{}", a.join(":")));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Decodes a LEASEQUERY-REPLY to `xid`; errors name what was wrong and where.
pub fn parse_answer6(b: &[u8], xid: [u8; 3]) -> Result<Lq6Answer> {
    let m = Message::parse(b, 0).map_err(|e| anyhow::anyhow!("reply: {e}"))?;
    if m.msg_type != msg::LEASEQUERY_REPLY || m.xid != xid {
        bail!("not a LEASEQUERY-REPLY to this query");
    }
    let mut a = Lq6Answer {
        answer: "NOT-FOUND".into(),
        ..Lq6Answer::default()
    };
    for o in m.options {
        let (code, body, at) = o.map_err(|e| anyhow::anyhow!("reply: {e}"))?;
        match code {
            opt::STATUS_CODE if body.len() >= 2 => {
                let c = u16::from_be_bytes([body[0], body[1]]);
                if c != status::SUCCESS {
                    a.answer = status_name(c);
                }
                a.message = Some(String::from_utf8_lossy(&body[2..]).into_owned());
            }
            opt::LQ_CLIENT_LINK => {
                a.answer = "CLIENT-LINKS".into();
                a.client_links = body.chunks_exact(16).map(addr16).collect();
            }
            opt::CLIENT_DATA => {
                a.answer = "BINDING".into();
                for o in Options::new(body, at) {
                    let (c, v, at) = o.map_err(|e| anyhow::anyhow!("client data: {e}"))?;
                    let e = |e: xdhcpd_dhcpv6::wire::WireError| anyhow::anyhow!("client data: {e}");
                    match c {
                        opt::CLIENTID => a.client_id = Some(hex(v)),
                        opt::IAADDR => {
                            let x = IaEntry::parse_addr(v, at).map_err(e)?;
                            a.bindings.push(Lq6Binding {
                                kind: "address",
                                address: Ipv6Addr::from(x.addr).to_string(),
                                preferred_left_s: x.preferred,
                                valid_left_s: x.valid,
                            });
                        }
                        opt::IAPREFIX => {
                            let x = IaEntry::parse_prefix(v, at).map_err(e)?;
                            a.bindings.push(Lq6Binding {
                                kind: "prefix",
                                address: format!("{}/{}", Ipv6Addr::from(x.addr), x.prefix_len),
                                preferred_left_s: x.preferred,
                                valid_left_s: x.valid,
                            });
                        }
                        opt::CLT_TIME if v.len() == 4 => {
                            a.seconds_since_last_transaction =
                                Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                        }
                        opt::LQ_RELAY_DATA => a.relay = Some(parse_relay_data(v, at)?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(a)
}

fn run6(a: &LeasequeryArgs) -> Result<Lq6Answer> {
    let std::net::IpAddr::V6(server) = a.server else {
        bail!("--server {}: -6 needs an IPv6 server address", a.server);
    };
    if a.mac.is_some() {
        bail!("--mac: DHCPv6 leasequery asks by --ip or --client-id (DUID)");
    }
    let ask = match (&a.ip, &a.client_id) {
        (Some(std::net::IpAddr::V6(ip)), _) => Ask6::Addr(*ip),
        (Some(ip), _) => bail!("--ip {ip}: -6 needs an IPv6 address"),
        (_, Some(id)) => Ask6::ClientId(parse_hex(id)?),
        _ => bail!("one of --ip or --client-id is needed"),
    };
    let requestor = duid_en(4491, b"xdhcpd-lq");
    let sock = UdpSocket::bind(SocketAddrV6::new(
        a.source.unwrap_or(Ipv6Addr::UNSPECIFIED),
        0,
        0,
        0,
    ))
    .context("binding the query's UDP socket")?;
    let pid = std::process::id().to_be_bytes();
    let xid = [pid[1], pid[2], pid[3]];
    let q = build_query6(
        xid,
        &requestor,
        a.link.unwrap_or(Ipv6Addr::UNSPECIFIED),
        &ask,
    )?;
    sock.send_to(&q, SocketAddrV6::new(server, 547, 0, 0))
        .with_context(|| format!("sending to [{server}]:547"))?;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer from {server} within {} ms", a.timeout_ms);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Ok(ans) = parse_answer6(&buf[..n], xid) {
                    return Ok(ans);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).context("receiving the answer"),
        }
    }
}

/// Prints the answer; a refusal (NotAllowed, ...) exits non-zero.
pub fn main_leasequery6(a: &LeasequeryArgs) -> ExitCode {
    let ans = match run6(a) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("xdhcpd leasequery -6: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&ans) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("xdhcpd leasequery -6: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", ans.answer);
        if let Some(m) = &ans.message {
            println!("  message: {m}");
        }
        if let Some(c) = &ans.client_id {
            println!("  client-id: {c}");
        }
        for b in &ans.bindings {
            println!(
                "  {}: {} preferred-left-s {} valid-left-s {}",
                b.kind, b.address, b.preferred_left_s, b.valid_left_s
            );
        }
        if let Some(s) = ans.seconds_since_last_transaction {
            println!("  since-last-transaction-s: {s}");
        }
        if let Some(r) = &ans.relay {
            println!("  relay peer-address: {}", r.peer_address);
            println!("  relay link-address: {}", r.link_address);
            for (k, v) in [
                ("interface-id", &r.interface_id),
                ("remote-id", &r.remote_id),
                ("subscriber-id", &r.subscriber_id),
                ("client-linklayer", &r.client_linklayer),
            ] {
                if let Some(v) = v {
                    println!("  {k}: {v}");
                }
            }
        }
        for l in &ans.client_links {
            println!("  link: {l}");
        }
    }
    if ans.refused() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lease_store::v6::BindingTable6;
    use xdhcpd_dhcpv6::{
        AddrPool6, Config6, Decision6, Engine6, Link6, PrefixPool6, RxMeta6, Stats6,
    };

    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().expect("address")
    }

    /// The tool's queries through the real engine, and its reading of the answers.
    #[test]
    fn leasequery_dhcpv6_tool_asks_and_reads_what_the_engine_answers() {
        let relay = ip("fd77::2");
        let link = Link6 {
            name: "lan".into(),
            prefix: ip("fd77::"),
            prefix_len: 64,
            ifindexes: vec![3],
            addr_pools: vec![AddrPool6 {
                start: ip("fd77::1:0"),
                end: ip("fd77::1:ff"),
            }],
            prefix_pools: vec![PrefixPool6 {
                prefix: ip("fd77:100::"),
                prefix_len: 40,
                delegated_len: 56,
            }],
            preferred: 3000,
            valid: 4000,
            t1: 0,
            t2: 0,
            rapid_commit: true,
            options: vec![],
            reservations: vec![],
            access: Default::default(),
        };
        let cfg = Config6 {
            links: vec![link],
            trusted_relays: vec![relay],
            decline_hold: 600,
            leasequery_allow: vec![(relay, 128)],
            classes: vec![],
        };
        let e = Engine6::new(cfg, duid_en(4491, b"srv"), Arc::new(Stats6::default()));
        let mut t = BindingTable6::in_memory(64);
        let mut out = vec![0u8; 1500];
        // A relayed Rapid Commit Solicit with IA_NA and IA_PD and relay data.
        let client = b"\x00\x03\x00\x01\x02\x00\x00\x00\x00\x07";
        let mut inner = vec![0u8; 256];
        let n = {
            let mut w = Writer::new(&mut inner);
            w.header(msg::SOLICIT, [1, 2, 3]);
            w.option(opt::CLIENTID, client);
            w.open_ia(opt::IA_NA, 1, 0, 0);
            w.close();
            w.open_ia(opt::IA_PD, 1, 0, 0);
            w.close();
            w.option(opt::RAPID_COMMIT, &[]);
            w.finish().expect("fits")
        };
        let mut f = vec![0u8; 512];
        let n = {
            let mut w = Writer::new(&mut f);
            w.relay_header(
                msg::RELAY_FORW,
                0,
                &ip("fd77::2").octets(),
                &ip("fe80::7").octets(),
            );
            w.option(opt::INTERFACE_ID, b"port-7");
            w.option(opt::REMOTE_ID, b"\x00\x00\x11\x8bcpe-42");
            w.option(opt::RELAY_MSG, &inner[..n]);
            w.finish().expect("fits")
        };
        let rmeta = RxMeta6 {
            src: relay,
            multicast: false,
            ifindex: 3,
            src_port: 547,
        };
        assert!(matches!(
            e.handle(&mut t, 1000, &rmeta, &f[..n], &mut out),
            Decision6::Reply {
                committed: true,
                ..
            }
        ));
        let qmeta = RxMeta6 {
            src_port: 40_000,
            ..rmeta
        };
        let ask =
            |e: &Engine6, t: &mut BindingTable6, out: &mut Vec<u8>, meta: &RxMeta6, ask: Ask6| {
                let xid = [9, 8, 7];
                let q = build_query6(
                    xid,
                    &duid_en(4491, b"xdhcpd-lq"),
                    Ipv6Addr::UNSPECIFIED,
                    &ask,
                )
                .expect("query");
                match e.handle(t, 1060, meta, &q, out) {
                    Decision6::Reply { len, port, .. } => {
                        assert_eq!(port, meta.src_port, "answered to the query's port");
                        let a = parse_answer6(&out[..len], xid).expect("answer decodes");
                        assert!(
                            parse_answer6(&out[..len], [0, 0, 0]).is_err(),
                            "xid checked"
                        );
                        a
                    }
                    d => panic!("no answer: {d:?}"),
                }
            };
        let by_id = ask(
            &e,
            &mut t,
            &mut out,
            &qmeta,
            Ask6::ClientId(client.to_vec()),
        );
        assert_eq!(by_id.answer, "BINDING");
        assert_eq!(by_id.client_id.as_deref(), Some("00030001020000000007"));
        assert_eq!(by_id.bindings.len(), 2);
        let addr = by_id
            .bindings
            .iter()
            .find(|b| b.kind == "address")
            .expect("an address")
            .address
            .clone();
        assert!(by_id
            .bindings
            .iter()
            .any(|b| b.kind == "prefix" && b.address.ends_with("/56")));
        assert!(by_id
            .bindings
            .iter()
            .all(|b| b.valid_left_s == 3940 && b.preferred_left_s == 2940));
        assert_eq!(by_id.seconds_since_last_transaction, Some(60));
        let r = by_id.relay.clone().expect("relay data");
        assert_eq!(
            (r.peer_address.as_str(), r.link_address.as_str()),
            ("fe80::7", "fd77::2")
        );
        assert_eq!(r.interface_id.as_deref(), Some("port-7"));
        assert_eq!(r.remote_id.as_deref(), Some("4491:cpe-42"));
        let by_addr = ask(&e, &mut t, &mut out, &qmeta, Ask6::Addr(ip(&addr)));
        assert_eq!(by_addr, by_id);
        // Unknown address in our pool; a disallowed source.
        let none = ask(&e, &mut t, &mut out, &qmeta, Ask6::Addr(ip("fd77::1:ff")));
        assert!(none.answer == "NOT-FOUND" || addr == "fd77::1:ff");
        assert!(!none.refused());
        let stranger = RxMeta6 {
            src: ip("fd77::66"),
            ..qmeta
        };
        let no = ask(&e, &mut t, &mut out, &stranger, Ask6::Addr(ip(&addr)));
        assert_eq!(no.answer, "NotAllowed");
        assert!(no.refused() && no.bindings.is_empty());
    }
}
