//! `xdhcpd leasequery`: send one RFC 4388 DHCPLEASEQUERY as a relay agent and
//! print the answer (for operators checking what a server, or its failover
//! partner, knows about an address, MAC or client id).
//!
//! The answer comes back to giaddr:67, so the tool binds `--relay`:67 and
//! must run on a host that owns that address (and is not itself a DHCP
//! server or relay on it).
//!
//! With `-6`: one RFC 5007 LEASEQUERY (by address or by client DUID) sent
//! unicast to the server's UDP 547 from an ephemeral port (the reply comes back
//! to it), printing the client's bindings, its last transaction time and the
//! relay data the binding came through (`lq6.rs`).
//!
//! With `--bulk` it is an RFC 6926 bulk leasequery requestor instead: one TCP
//! connection to `--server`:`--port`, one query (by MAC, client id, relay-id,
//! remote-id or all), one line per binding, then a summary (count, time).
//!
//! With `--active` it is an RFC 7724 active leasequery requestor: it subscribes (all
//! bindings, or by --relay-id / --remote-id; `--start-time` asks for the catch-up of every
//! change since then), prints each binding change as it comes (one line, with the
//! server's base-time and the lease's end), and when the connection ends (cut off for
//! falling behind, server restart, network) reconnects with query-start-time = the
//! last base-time it saw minus `--resume-margin-s` (the catch-up re-sends what changed
//! since; a catch-up that did not complete is asked again from the same time), so the
//! stream resumes with nothing missed. Stops after `--max-changes` or `--duration-s`.
//!
//! TLS (RFC 7724 DHCPTLS), `--bulk` and `--active`: with `--tls-ca-file` every connection
//! starts with a DHCPTLS; on the server's DHCPTLS without status the rustls handshake runs
//! on the same connection (the server's certificate verified against that CA file and
//! `--tls-server-name`, default the `--server` address; `--tls-cert-file` / `--tls-key-file`
//! present a client certificate), and the queries go inside TLS. A server that answers
//! TLSConnectionRefused ends the run: a requestor that asked for TLS sends nothing in clear.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};
use xdhcpd_config::TlsClientConfig;

use anyhow::{bail, Context, Result};
use clap::Args;

use xdhcpd_dhcpv4::bulk_leasequery as bulk;
use xdhcpd_dhcpv4::wire::{
    opt, relay_sub, Message, MessageType, SubOptionIter, MAGIC_COOKIE, OP_BOOTREPLY, OP_BOOTREQUEST,
};

#[derive(Args, Debug)]
pub struct LeasequeryArgs {
    /// DHCPv6 (RFC 5007): ask the server's UDP 547 by --ip or --client-id (a DUID).
    #[arg(short = '6')]
    pub v6: bool,
    /// The DHCP server to ask (UDP port 67; with -6 an IPv6 address, port 547; with --bulk TCP --port).
    #[arg(long)]
    pub server: IpAddr,
    /// Our relay-agent address: giaddr, and where the answer is received (port 67).
    /// DHCPv4 only; not used with --bulk.
    #[arg(long)]
    pub relay: Option<Ipv4Addr>,
    /// RFC 6926 bulk leasequery over TCP: every binding the query matches.
    #[arg(long, group = "tcp")]
    pub bulk: bool,
    /// RFC 7724 active leasequery over TCP: binding changes as they happen, until
    /// --max-changes or --duration-s; reconnects and resumes when the connection ends.
    #[arg(long, group = "tcp")]
    pub active: bool,
    /// --bulk / --active: the server's TCP port.
    #[arg(long, default_value_t = 67)]
    pub port: u16,
    /// --bulk / --active: query by RFC 6925 relay-id (text, or hex after "0x").
    #[arg(long, group = "query", requires = "tcp")]
    pub relay_id: Option<String>,
    /// --bulk / --active: query by remote-id (option 82 sub-option 2; text, or hex after "0x").
    #[arg(long, group = "query", requires = "tcp")]
    pub remote_id: Option<String>,
    /// --bulk / --active: every configured address (the default when no query is given).
    #[arg(long, group = "query", requires = "tcp")]
    pub all: bool,
    /// --bulk: only bindings whose state began at or after this Unix time (query-start-time);
    /// --active: catch up on every change since then first.
    #[arg(long, requires = "tcp")]
    pub start_time: Option<u32>,
    /// --active: stop after this many binding changes (0: no limit).
    #[arg(long, default_value_t = 0, requires = "active")]
    pub max_changes: u64,
    /// --active: stop after this many seconds (0: no limit).
    #[arg(long, default_value_t = 0, requires = "active")]
    pub duration_s: u64,
    /// --active: reconnections at most before giving up.
    #[arg(long, default_value_t = 100, requires = "active")]
    pub max_reconnects: u32,
    /// --active: on reconnect, ask for the changes since the last base-time seen minus
    /// this (changes still queued at the server when the connection ended are older than
    /// the last message; the partner's changes carry its times).
    #[arg(long, default_value_t = 60, requires = "active")]
    pub resume_margin_s: u32,
    /// --active (diagnostics, tests): after this many binding changes stop reading for
    /// --pause-ms once, as a slow subscriber would.
    #[arg(long, requires = "active")]
    pub pause_after: Option<u64>,
    /// --active: how long --pause-after stops reading.
    #[arg(long, default_value_t = 0, requires = "active")]
    pub pause_ms: u64,
    /// --bulk: only bindings whose state began at or before this Unix time (query-end-time).
    #[arg(long, requires = "bulk")]
    pub end_time: Option<u32>,
    /// --bulk / --active: TLS (RFC 7724 DHCPTLS first on every connection); the CA
    /// certificate(s) (PEM) that signed the server's certificate. A server that refuses
    /// TLS ends the run (nothing is sent in clear).
    #[arg(long, requires = "tcp")]
    pub tls_ca_file: Option<PathBuf>,
    /// --tls-ca-file: our client certificate chain (PEM), for a server that requires one.
    #[arg(long, requires = "tls_ca_file", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// --tls-ca-file: the private key (PEM) of --tls-cert-file.
    #[arg(long, requires = "tls_ca_file", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// --tls-ca-file: the name the server's certificate must carry (default: the --server
    /// address, as an IP address name).
    #[arg(long, requires = "tls_ca_file")]
    pub tls_server_name: Option<String>,
    /// Query by address (with -6: an address, or one inside a delegated prefix).
    #[arg(long, group = "query")]
    pub ip: Option<IpAddr>,
    /// Query by MAC address (aa:bb:cc:dd:ee:ff, Ethernet).
    #[arg(long, group = "query")]
    pub mac: Option<String>,
    /// Query by client identifier (option 61 value, hex, type byte included; with -6
    /// the client's DUID in hex).
    #[arg(long, group = "query")]
    pub client_id: Option<String>,
    /// -6: the link-address of the query (default :: = every link).
    #[arg(long)]
    pub link: Option<std::net::Ipv6Addr>,
    /// -6: the source address to send from (default: the kernel's choice).
    #[arg(long)]
    pub source: Option<std::net::Ipv6Addr>,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What to ask about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Ip(Ipv4Addr),
    Mac([u8; 6]),
    ClientId(Vec<u8>),
}

/// A DHCPLEASEQUERY from relay agent `relay` asking for 51, 61, 82 and 91.
pub fn build_query(xid: u32, relay: Ipv4Addr, ask: &Ask) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[24..28].copy_from_slice(&relay.octets());
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    let mut opts: Vec<(u8, Vec<u8>)> = vec![
        (opt::MESSAGE_TYPE, vec![MessageType::LeaseQuery as u8]),
        (
            opt::PARAMETER_LIST,
            vec![
                opt::LEASE_TIME,
                opt::CLIENT_ID,
                opt::RELAY_AGENT_INFO,
                opt::CLIENT_LAST_TRANSACTION_TIME,
            ],
        ),
    ];
    match ask {
        Ask::Ip(ip) => b[12..16].copy_from_slice(&ip.octets()),
        Ask::Mac(m) => {
            b[1] = 1;
            b[2] = 6;
            b[28..34].copy_from_slice(m);
        }
        Ask::ClientId(id) => opts.push((opt::CLIENT_ID, id.clone())),
    }
    for (c, v) in opts {
        b.push(c);
        b.push(v.len() as u8);
        b.extend_from_slice(&v);
    }
    b.push(opt::END);
    b
}

/// The answer, decoded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LqAnswer {
    /// LEASEACTIVE, LEASEUNASSIGNED or LEASEUNKNOWN.
    pub answer: String,
    pub address: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub client_id: Option<String>,
    pub lease_seconds_left: Option<u32>,
    pub seconds_since_last_transaction: Option<u32>,
    /// Option 82 as hex, and its circuit-id / remote-id sub-options.
    pub relay_agent_info: Option<String>,
    pub circuit_id: Option<String>,
    pub remote_id: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Printable text when the bytes are printable ASCII, else hex.
fn text_or_hex(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        String::from_utf8_lossy(b).into_owned()
    } else {
        hex(b)
    }
}

/// Decodes an answer to `xid`; errors name what was wrong.
pub fn parse_answer(b: &[u8], xid: u32) -> Result<LqAnswer> {
    let m = Message::new_checked(b).context("answer")?;
    if m.op() != OP_BOOTREPLY || m.xid() != xid {
        bail!("not an answer to xid {xid:#010x}");
    }
    let s = m.summary().context("answer options")?;
    let answer = match s.message_type {
        Some(MessageType::LeaseActive) => "LEASEACTIVE",
        Some(MessageType::LeaseUnassigned) => "LEASEUNASSIGNED",
        Some(MessageType::LeaseUnknown) => "LEASEUNKNOWN",
        other => bail!("answer of type {other:?}, not a leasequery answer"),
    };
    let mut cltt = None;
    for o in m.options() {
        let (c, v, off) = o.context("answer options")?;
        if c == opt::CLIENT_LAST_TRANSACTION_TIME {
            let a = <[u8; 4]>::try_from(v)
                .map_err(|_| anyhow::anyhow!("option 91 at offset {off}: length {}", v.len()))?;
            cltt = Some(u32::from_be_bytes(a));
        }
    }
    let (mut circuit_id, mut remote_id) = (None, None);
    if let Some(ri) = s.relay_agent_info {
        for sub in SubOptionIter::new(ri) {
            let Ok((code, val)) = sub else { break };
            match code {
                relay_sub::CIRCUIT_ID => circuit_id = Some(text_or_hex(val)),
                relay_sub::REMOTE_ID => remote_id = Some(text_or_hex(val)),
                _ => {}
            }
        }
    }
    let hw = m.chaddr();
    Ok(LqAnswer {
        answer: answer.to_string(),
        address: (!m.ciaddr().is_unspecified()).then_some(m.ciaddr()),
        mac: (!hw.is_empty() && hw.iter().any(|&x| x != 0)).then(|| {
            hw.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }),
        client_id: s.client_id.map(hex),
        lease_seconds_left: s.lease_time,
        seconds_since_last_transaction: cltt,
        relay_agent_info: s.relay_agent_info.map(hex),
        circuit_id,
        remote_id,
    })
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        bail!("--mac {s:?}: six hex bytes separated by ':' expected");
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16)
            .map_err(|_| anyhow::anyhow!("--mac {s:?}: byte {} ({p:?}) is not hex", i + 1))?;
    }
    Ok(m)
}

pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 510 {
        bail!("--client-id: 1 to 255 bytes of hex expected");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| anyhow::anyhow!("--client-id: {:?} at {i} is not hex", &s[i..i + 2]))
        })
        .collect()
}

fn run(a: &LeasequeryArgs) -> Result<LqAnswer> {
    let ask = match (&a.ip, &a.mac, &a.client_id) {
        (Some(IpAddr::V4(ip)), _, _) => Ask::Ip(*ip),
        (Some(IpAddr::V6(ip)), _, _) => bail!("--ip {ip}: an IPv6 address needs -6"),
        (_, Some(m), _) => Ask::Mac(parse_mac(m)?),
        (_, _, Some(id)) => Ask::ClientId(parse_hex(id)?),
        _ => bail!("one of --ip, --mac or --client-id is needed"),
    };
    let IpAddr::V4(server) = a.server else {
        bail!("--server {}: an IPv6 server needs -6", a.server);
    };
    let Some(relay) = a.relay else {
        bail!("--relay is needed (the answer comes to giaddr:67)");
    };
    let a = &Lq4 {
        server,
        relay,
        timeout_ms: a.timeout_ms,
    };
    let sock = UdpSocket::bind(SocketAddrV4::new(a.relay, 67))
        .with_context(|| format!("binding {}:67 (the answer comes to giaddr:67)", a.relay))?;
    let xid = std::process::id() ^ 0x4c51_0000;
    let q = build_query(xid, relay, &ask);
    sock.send_to(&q, SocketAddrV4::new(a.server, 67))
        .with_context(|| format!("sending to {}:67", a.server))?;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer from {} within {} ms", a.server, a.timeout_ms);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Ok(ans) = parse_answer(&buf[..n], xid) {
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

struct Lq4 {
    server: Ipv4Addr,
    relay: Ipv4Addr,
    timeout_ms: u64,
}

/// `--relay-id` / `--remote-id` value: text, or hex after "0x".
fn parse_id(flag: &str, s: &str) -> Result<Vec<u8>> {
    let v = match s.strip_prefix("0x") {
        Some(h) => parse_hex(h)
            .map_err(|_| anyhow::anyhow!("{flag} {s:?}: hex bytes expected after 0x"))?,
        None => s.as_bytes().to_vec(),
    };
    if v.is_empty() || v.len() > 253 {
        bail!("{flag} {s:?}: 1 to 253 bytes expected");
    }
    Ok(v)
}

/// One bulk answer as a line.
fn bulk_line(r: &bulk::Reply) -> String {
    let kind = match r.kind {
        MessageType::LeaseActive => "ACTIVE",
        _ => "UNASSIGNED",
    };
    let state = match r.state {
        Some(1) => "available",
        Some(2) => "active",
        Some(3) => "expired",
        Some(4) => "released",
        Some(5) => "abandoned",
        Some(6) => "reset",
        Some(7) => "remote",
        Some(8) => "transitioning",
        _ => "-",
    };
    let mut l = format!("{kind} {} state={state}", r.addr);
    if !r.hw.is_empty() && r.hw.iter().any(|&b| b != 0) {
        let mac: Vec<String> = r.hw.iter().map(|x| format!("{x:02x}")).collect();
        l.push_str(&format!(" mac={}", mac.join(":")));
    }
    if let Some(id) = &r.client_id {
        l.push_str(&format!(" client-id={}", hex(id)));
    }
    if let Some(t) = r.lease_time {
        l.push_str(&format!(" lease-left-s={t}"));
    }
    if let Some(ri) = &r.relay_agent_info {
        for sub in SubOptionIter::new(ri) {
            let Ok((code, val)) = sub else { break };
            match code {
                relay_sub::CIRCUIT_ID => l.push_str(&format!(" circuit-id={}", text_or_hex(val))),
                relay_sub::REMOTE_ID => l.push_str(&format!(" remote-id={}", text_or_hex(val))),
                relay_sub::RELAY_ID => l.push_str(&format!(" relay-id={}", text_or_hex(val))),
                _ => {}
            }
        }
    }
    l
}

/// A leasequery TCP connection, in clear or inside TLS.
pub enum LqStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl LqStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            LqStream::Plain(s) => s,
            LqStream::Tls(s) => &s.sock,
        }
    }
}

impl Read for LqStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            LqStream::Plain(s) => s.read(b),
            LqStream::Tls(s) => s.read(b),
        }
    }
}

impl Write for LqStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            LqStream::Plain(s) => s.write(b),
            LqStream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LqStream::Plain(s) => s.flush(),
            LqStream::Tls(s) => s.flush(),
        }
    }
}

/// The requestor's TLS settings (`--tls-*`), files read once.
pub struct LqTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl LqTls {
    fn from_args(a: &LeasequeryArgs) -> Result<Option<LqTls>> {
        let Some(ca) = &a.tls_ca_file else {
            return Ok(None);
        };
        let files = TlsClientConfig {
            ca_file: ca.clone(),
            cert_file: a.tls_cert_file.clone(),
            key_file: a.tls_key_file.clone(),
        };
        let config = crate::tls::client_config(&files, "--tls")?;
        let name = match &a.tls_server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|e| anyhow::anyhow!("--tls-server-name {n:?}: {e}"))?,
            None => ServerName::IpAddress(a.server.into()),
        };
        Ok(Some(LqTls {
            config: Arc::new(config),
            name,
        }))
    }
}

/// Reads one framed message (blocking, within the socket's read timeout).
fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .context("reading the answer to DHCPTLS")?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut m)
        .context("reading the answer to DHCPTLS")?;
    Ok(m)
}

/// Connects to `--server`:`--port` (reads time out after `read_timeout`); with TLS, sends
/// DHCPTLS (xid `xid`), reads the answer and runs the handshake (within `--timeout-ms`).
pub fn connect(
    a: &LeasequeryArgs,
    tls: Option<&LqTls>,
    xid: u32,
    read_timeout: Duration,
) -> Result<LqStream> {
    let addr = std::net::SocketAddr::from((a.server, a.port));
    let timeout = Duration::from_millis(a.timeout_ms);
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr} (tcp)"))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        tcp.set_read_timeout(Some(read_timeout))?;
        return Ok(LqStream::Plain(tcp));
    };
    tcp.set_read_timeout(Some(timeout))?;
    tcp.write_all(&bulk::build_tls_request(xid))
        .context("sending DHCPTLS")?;
    let m = read_frame(&mut tcp).with_context(|| format!("{addr}"))?;
    match bulk::parse_tls_answer(&m, xid).map_err(|e| anyhow::anyhow!("{addr}: DHCPTLS: {e}"))? {
        bulk::TlsAnswer::Start => {}
        bulk::TlsAnswer::Refused(text) => {
            bail!("{addr} refused TLS (TLSConnectionRefused: {text}); nothing was sent in clear")
        }
    }
    let mut conn = ClientConnection::new(tls.config.clone(), tls.name.clone())
        .map_err(|e| anyhow::anyhow!("TLS with {addr}: {e}"))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            let hint = if e.to_string().contains("certificate") {
                " (is --tls-ca-file the CA that signed the server's certificate, and does it \
                 name --server or --tls-server-name?)"
            } else {
                ""
            };
            bail!("TLS handshake with {addr}: {e}{hint}");
        }
    }
    tcp.set_read_timeout(Some(read_timeout))?;
    Ok(LqStream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

/// What a bulk query brought: the counts, and the final status when not Success.
#[derive(Debug, Default)]
pub struct BulkSummary {
    pub active: u64,
    pub unassigned: u64,
}

/// Runs one bulk leasequery on a connected stream, giving each answer to `each`;
/// returns the counts, or an error naming the server's status.
pub fn bulk_query(
    stream: &mut (impl Read + Write),
    xid: u32,
    q: &bulk::QuerySpec<'_>,
    start: Option<u32>,
    end: Option<u32>,
    mut each: impl FnMut(&bulk::Reply),
) -> Result<BulkSummary> {
    stream
        .write_all(&bulk::build_query(xid, q, start, end))
        .and_then(|()| stream.flush())
        .context("sending the query")?;
    let mut rd = std::io::BufReader::with_capacity(256 * 1024, stream);
    let mut sum = BulkSummary::default();
    let mut buf = vec![0u8; 65535];
    let mut at: u64 = 0;
    loop {
        let mut len = [0u8; 2];
        match rd.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!(
                    "the server closed the connection before DHCPLEASEQUERYDONE (after {} answers)",
                    sum.active + sum.unassigned
                )
            }
            Err(e) => return Err(e).context("reading an answer"),
        }
        let n = usize::from(u16::from_be_bytes(len));
        rd.read_exact(&mut buf[..n])
            .with_context(|| format!("reading an answer of {n} bytes at stream offset {at}"))?;
        let r = bulk::parse_reply(&buf[..n])
            .map_err(|e| anyhow::anyhow!("answer at stream offset {at}: {e}"))?;
        at += 2 + n as u64;
        if r.xid != xid {
            bail!(
                "answer at stream offset {at} is for xid {:#x}, not {xid:#x}",
                r.xid
            );
        }
        match r.kind {
            MessageType::LeaseActive => sum.active += 1,
            MessageType::LeaseUnassigned => sum.unassigned += 1,
            MessageType::LeaseQueryDone => {
                return match &r.status {
                    None | Some((0, _)) => Ok(sum),
                    Some((code, text)) => {
                        let name = match bulk::Status::from_u8(*code) {
                            Some(s) => format!("{s:?}"),
                            None => format!("status {code}"),
                        };
                        bail!("the server answered {name}: {text}")
                    }
                };
            }
            other => bail!("answer at stream offset {at}: unexpected {other:?}"),
        }
        each(&r);
    }
}

fn run_bulk(a: &LeasequeryArgs) -> Result<()> {
    if a.ip.is_some() {
        bail!("--bulk has no query by --ip (use it without --bulk: RFC 4388)");
    }
    let mac;
    let id;
    let q = match (&a.mac, &a.client_id, &a.relay_id, &a.remote_id) {
        (Some(m), ..) => {
            mac = parse_mac(m)?;
            bulk::QuerySpec::Mac { htype: 1, hw: &mac }
        }
        (_, Some(c), ..) => {
            id = parse_hex(c)?;
            bulk::QuerySpec::ClientId(&id)
        }
        (_, _, Some(r), _) => {
            id = parse_id("--relay-id", r)?;
            bulk::QuerySpec::RelayId(&id)
        }
        (_, _, _, Some(r)) => {
            id = parse_id("--remote-id", r)?;
            bulk::QuerySpec::RemoteId(&id)
        }
        _ => bulk::QuerySpec::All,
    };
    let addr = std::net::SocketAddr::from((a.server, a.port));
    let tls = LqTls::from_args(a)?;
    let started = Instant::now();
    let xid = std::process::id() ^ 0x424c_0000;
    let mut stream = connect(
        a,
        tls.as_ref(),
        xid ^ 0x0000_7415,
        Duration::from_millis(a.timeout_ms),
    )?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let sum = bulk_query(&mut stream, xid, &q, a.start_time, a.end_time, |r| {
        let _ = writeln!(out, "{}", bulk_line(r));
    });
    {
        let _ = out.flush();
    }
    let sum = sum?;
    let dt = started.elapsed();
    println!(
        "{} bindings ({} active, {} unassigned) from {addr}{} in {:.3} s",
        sum.active + sum.unassigned,
        sum.active,
        sum.unassigned,
        if tls.is_some() { " over TLS" } else { "" },
        dt.as_secs_f64()
    );
    Ok(())
}

/// How one active leasequery connection ended.
#[derive(Debug)]
enum ActiveEnd {
    /// --max-changes or --duration-s reached.
    Finished,
    /// The connection ended; reconnect. `caught_up`: the catch-up (if any) completed.
    Lost { why: String, caught_up: bool },
}

/// The requestor's state across connections.
struct ActiveRun<'a> {
    a: &'a LeasequeryArgs,
    tls: Option<LqTls>,
    deadline: Option<Instant>,
    changes: u64,
    paused: bool,
    last_base: Option<u32>,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl ActiveRun<'_> {
    fn done(&self) -> bool {
        (self.a.max_changes > 0 && self.changes >= self.a.max_changes)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// One connection: subscribe with `start`, print until it ends.
    fn once(&mut self, q: &bulk::QuerySpec<'_>, start: Option<u32>, xid: u32) -> Result<ActiveEnd> {
        let mut stream = connect(
            self.a,
            self.tls.as_ref(),
            xid ^ 0x0000_7415,
            Duration::from_millis(200),
        )?;
        if self.a.pause_after.is_some() {
            // A small receive window, so that the pause shows at the server instead of
            // being absorbed by an autotuned buffer.
            use std::os::fd::AsRawFd;
            let v: libc::c_int = 64 * 1024;
            // SAFETY: setsockopt on our socket with a pointer to a live c_int and its size.
            unsafe {
                libc::setsockopt(
                    stream.tcp().as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let conn_started = Instant::now();
        stream
            .write_all(&bulk::build_active_query(xid, q, start))
            .and_then(|()| stream.flush())
            .context("sending the query")?;
        let mut caught_up = start.is_none();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut chunk = vec![0u8; 256 * 1024];
        let mut at: u64 = 0;
        loop {
            // Every complete frame in the buffer.
            let mut used = 0;
            while buf.len() - used >= 2 {
                let n = usize::from(u16::from_be_bytes([buf[used], buf[used + 1]]));
                if buf.len() - used < 2 + n {
                    break;
                }
                let r = bulk::parse_reply(&buf[used + 2..used + 2 + n])
                    .map_err(|e| anyhow::anyhow!("message at stream offset {at}: {e}"))?;
                used += 2 + n;
                at += 2 + n as u64;
                if let Some(bt) = r.base_time {
                    self.last_base = Some(bt);
                }
                let bt = r.base_time.unwrap_or(0);
                match r.kind {
                    MessageType::LeaseActive | MessageType::LeaseUnassigned => {
                        let mut l = bulk_line(&r);
                        l.push_str(&format!(" base-time={bt}"));
                        if let (MessageType::LeaseActive, Some(left)) = (r.kind, r.lease_time) {
                            l.push_str(&format!(" expiry={}", bt.saturating_add(left)));
                        }
                        let _ = writeln!(self.out, "{l}");
                        self.changes += 1;
                    }
                    MessageType::LeaseQueryStatus => {
                        let name = status_name(&r);
                        if r.status
                            .as_ref()
                            .is_some_and(|s| s.0 == bulk::Status::CatchUpComplete as u8)
                        {
                            caught_up = true;
                        }
                        let ms = conn_started.elapsed().as_millis();
                        let _ = writeln!(
                            self.out,
                            "STATUS {name} base-time={bt} after-ms={ms} changes={}",
                            self.changes
                        );
                    }
                    MessageType::LeaseQueryDone => {
                        let name = status_name(&r);
                        let _ = writeln!(self.out, "DONE {name} base-time={bt}");
                        let _ = self.out.flush();
                        if r.xid != xid {
                            continue;
                        }
                        match r.status.as_ref().and_then(|s| bulk::Status::from_u8(s.0)) {
                            Some(bulk::Status::DataMissing | bulk::Status::QueryTerminated) => {
                                return Ok(ActiveEnd::Lost {
                                    why: name,
                                    caught_up,
                                });
                            }
                            _ => bail!("the server answered {name}"),
                        }
                    }
                    other => bail!("message at stream offset {at}: unexpected {other:?}"),
                }
                if self.done() {
                    let _ = self.out.flush();
                    return Ok(ActiveEnd::Finished);
                }
                if let Some(p) = self.a.pause_after {
                    if !self.paused && self.changes >= p {
                        self.paused = true;
                        let _ = self.out.flush();
                        std::thread::sleep(Duration::from_millis(self.a.pause_ms));
                    }
                }
            }
            buf.drain(..used);
            let _ = self.out.flush();
            if self.done() {
                return Ok(ActiveEnd::Finished);
            }
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Ok(ActiveEnd::Lost {
                        why: "the server closed the connection".into(),
                        caught_up,
                    })
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    return Ok(ActiveEnd::Lost {
                        why: format!("reading: {e}"),
                        caught_up,
                    })
                }
            }
        }
    }
}

fn status_name(r: &bulk::Reply) -> String {
    match &r.status {
        None => "Success".into(),
        Some((code, text)) => {
            let name = match bulk::Status::from_u8(*code) {
                Some(s) => format!("{s:?}"),
                None => format!("status-{code}"),
            };
            if text.is_empty() {
                name
            } else {
                format!("{name} ({text})")
            }
        }
    }
}

fn run_active(a: &LeasequeryArgs) -> Result<()> {
    if a.ip.is_some() || a.mac.is_some() || a.client_id.is_some() {
        bail!("--active filters by --relay-id or --remote-id only (or --all)");
    }
    if a.end_time.is_some() {
        bail!("--active has no --end-time");
    }
    let id;
    let q = match (&a.relay_id, &a.remote_id) {
        (Some(r), _) => {
            id = parse_id("--relay-id", r)?;
            bulk::QuerySpec::RelayId(&id)
        }
        (_, Some(r)) => {
            id = parse_id("--remote-id", r)?;
            bulk::QuerySpec::RemoteId(&id)
        }
        _ => bulk::QuerySpec::All,
    };
    let started = Instant::now();
    let mut run = ActiveRun {
        a,
        tls: LqTls::from_args(a)?,
        deadline: (a.duration_s > 0).then(|| started + Duration::from_secs(a.duration_s)),
        changes: 0,
        paused: false,
        last_base: None,
        out: std::io::BufWriter::new(std::io::stdout().lock()),
    };
    let mut start = a.start_time;
    // Without --start-time the first connection gets only what changes after it
    // subscribed: resuming from then needs a time even if no message came.
    let local_start = crate::clock::unix_now();
    let mut reconnects = 0u32;
    let xid0 = std::process::id() ^ 0x414c_0000;
    loop {
        let xid = xid0.wrapping_add(reconnects);
        let end = match run.once(&q, start, xid) {
            Ok(e) => e,
            Err(e) if reconnects > 0 => ActiveEnd::Lost {
                why: format!("{e:#}"),
                caught_up: false,
            },
            Err(e) => return Err(e),
        };
        match end {
            ActiveEnd::Finished => break,
            ActiveEnd::Lost { why, caught_up } => {
                if run.done() {
                    break;
                }
                reconnects += 1;
                if reconnects > a.max_reconnects {
                    bail!("gave up after {} reconnections: {why}", a.max_reconnects);
                }
                if caught_up {
                    let from = run.last_base.unwrap_or(local_start);
                    start = Some(
                        from.saturating_sub(a.resume_margin_s)
                            .max(start.unwrap_or(0)),
                    );
                } else if start.is_none() {
                    start = Some(local_start.saturating_sub(a.resume_margin_s));
                }
                {
                    let t = start.unwrap_or(0);
                    let _ = writeln!(run.out, "RECONNECT start-time={t} after: {why}");
                    let _ = run.out.flush();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let dt = started.elapsed();
    eprintln!(
        "{} binding changes in {:.3} s ({:.0}/s), {reconnects} reconnections",
        run.changes,
        dt.as_secs_f64(),
        run.changes as f64 / dt.as_secs_f64().max(1e-9)
    );
    Ok(())
}

pub fn main_leasequery(a: LeasequeryArgs) -> ExitCode {
    if a.v6 {
        return crate::lq6::main_leasequery6(&a);
    }
    if a.active {
        return match run_active(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xdhcpd leasequery --active: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if a.bulk {
        return match run_bulk(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xdhcpd leasequery --bulk: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&a) {
        Ok(ans) => {
            if a.json {
                match serde_json::to_string_pretty(&ans) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("xdhcpd leasequery: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{}", ans.answer);
                let fields = [
                    ("address", ans.address.map(|x| x.to_string())),
                    ("mac", ans.mac.clone()),
                    ("client-id", ans.client_id.clone()),
                    (
                        "lease-left-s",
                        ans.lease_seconds_left.map(|x| x.to_string()),
                    ),
                    (
                        "since-last-transaction-s",
                        ans.seconds_since_last_transaction.map(|x| x.to_string()),
                    ),
                    ("option-82", ans.relay_agent_info.clone()),
                    ("circuit-id", ans.circuit_id.clone()),
                    ("remote-id", ans.remote_id.clone()),
                ];
                for (k, v) in fields {
                    if let Some(v) = v {
                        println!("  {k}: {v}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdhcpd leasequery: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_errors_name_the_argument() {
        assert!(parse_mac("02:00:00:00:00")
            .unwrap_err()
            .to_string()
            .contains("six hex bytes"));
        assert!(parse_mac("02:00:00:00:00:zz")
            .unwrap_err()
            .to_string()
            .contains("byte 6"));
        assert_eq!(parse_hex("01:02:0a").unwrap(), vec![1, 2, 10]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("").is_err());
    }

    #[test]
    fn answers_from_other_exchanges_are_refused() {
        let q = build_query(7, Ipv4Addr::new(10, 0, 0, 9), &Ask::Ip(Ipv4Addr::LOCALHOST));
        // Our own request (op BOOTREQUEST) is not an answer.
        assert!(parse_answer(&q, 7).is_err());
        assert!(parse_answer(&q[..100], 7).is_err());
    }

    /// The tool's query through the real engine, and its reading of the answers.
    #[test]
    fn the_leasequery_tool_asks_and_reads_what_the_engine_answers() {
        use std::sync::Arc;

        use lease_store::{LeaseTable, OpenOptions, PoolSpec};
        use xdhcpd_dhcpv4::{Decision, Engine, EngineShared, EngineStats, RxMeta};

        const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
        const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
        const CFG: &str = r#"
[server]
interface = "lo"
[lease]
default-time = 3600
min-time = 60
max-time = 7200
[[subnet]]
cidr = "10.9.0.0/24"
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#;
        // Circuit-id "port-7", remote-id "cpe-42".
        const OPT82: &[u8] = &[
            1, 6, b'p', b'o', b'r', b't', b'-', b'7', 2, 6, b'c', b'p', b'e', b'-', b'4', b'2',
        ];
        let cfg = Arc::new(xdhcpd_config::parse(CFG, "lq.toml").expect("config"));
        let dir = tempfile::tempdir().expect("tempdir");
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let opts = OpenOptions {
            now: 1000,
            ..OpenOptions::default()
        };
        let (table, _) =
            LeaseTable::open(&dir.path().join("l.db"), &pools, &opts).expect("lease table");
        let shared = EngineShared::new(cfg, Arc::new(table), SERVER);
        let mut engine = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
        let meta = RxMeta {
            local_addr: SERVER,
            src_ip: RELAY,
            dst_ip: SERVER,
        };
        let mut handle = |now: u32, req: &[u8]| -> (MessageType, Vec<u8>) {
            let mut out = [0u8; 1500];
            match engine.handle(now, &meta, req, &mut out) {
                Decision::Reply { len, kind, .. } => (kind, out[..len].to_vec()),
                Decision::Silent(why) => panic!("no answer: {why:?}"),
            }
        };
        // A relayed DORA by client 02:00:00:00:00:16 with a client id and option 82.
        let id = [1, 2, 0, 0, 0, 0, 22];
        let request = |kind: u8, extra: &[(u8, &[u8])]| {
            let mut b = vec![0u8; 240];
            b[0] = OP_BOOTREQUEST;
            b[1] = 1;
            b[2] = 6;
            b[24..28].copy_from_slice(&RELAY.octets());
            b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 22]);
            b[236..240].copy_from_slice(&MAGIC_COOKIE);
            let base: [(u8, &[u8]); 3] = [
                (opt::MESSAGE_TYPE, &[kind]),
                (opt::CLIENT_ID, &id),
                (opt::RELAY_AGENT_INFO, OPT82),
            ];
            for (c, v) in base.iter().chain(extra) {
                b.push(*c);
                b.push(v.len() as u8);
                b.extend_from_slice(v);
            }
            b.push(opt::END);
            b
        };
        let (kind, offer) = handle(1000, &request(1, &[]));
        assert_eq!(kind, MessageType::Offer);
        let ip = Message::new_checked(&offer).expect("offer parses").yiaddr();
        let (sid, rip) = (SERVER.octets(), ip.octets());
        let sel = [(opt::SERVER_ID, &sid[..]), (opt::REQUESTED_IP, &rip[..])];
        assert_eq!(handle(1000, &request(3, &sel)).0, MessageType::Ack);

        for (xid, ask) in [
            (1, Ask::Ip(ip)),
            (2, Ask::Mac([2, 0, 0, 0, 0, 22])),
            (3, Ask::ClientId(id.to_vec())),
        ] {
            let (_, a) = handle(1060, &build_query(xid, RELAY, &ask));
            let ans = parse_answer(&a, xid).expect("answer decodes");
            assert_eq!(ans.answer, "LEASEACTIVE", "{ask:?}");
            assert_eq!(ans.address, Some(ip));
            assert_eq!(ans.mac.as_deref(), Some("02:00:00:00:00:16"));
            assert_eq!(ans.client_id.as_deref(), Some("01020000000016"));
            assert_eq!(ans.lease_seconds_left, Some(3540));
            assert_eq!(ans.seconds_since_last_transaction, Some(60));
            assert_eq!(ans.circuit_id.as_deref(), Some("port-7"));
            assert_eq!(ans.remote_id.as_deref(), Some("cpe-42"));
            assert!(parse_answer(&a, xid + 1).is_err(), "xid checked");
        }
        let unassigned = Ask::Ip(Ipv4Addr::new(10, 9, 0, 19));
        let (_, a) = handle(1060, &build_query(4, RELAY, &unassigned));
        let ans = parse_answer(&a, 4).expect("answer decodes");
        assert_eq!(ans.answer, "LEASEUNASSIGNED");
        assert_eq!(ans.relay_agent_info, None);
    }
}
