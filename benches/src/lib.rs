//! Helpers shared by the benchmarks: realistic DHCP requests, Ethernet
//! frames around them, and an engine over a large lease table.
//!
//! Every message the benchmarks feed in is built here, so the wire, engine
//! and responder groups measure the same bytes.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lease_store::{LeaseState, LeaseTable, OpenOptions, PoolSpec, Slot};
use xdhcpd_dhcpv4::{Engine, EngineShared, EngineStats};
use xdhcpd_io::frame::{self, FrameLayout, Ipv4UdpAddrs};

/// The clock the benchmarks run at (unix seconds).
pub const NOW: u32 = 1_700_000_000;
/// Server identifier and interface address.
pub const SERVER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The relay agent's giaddr (inside the subnet, so it selects it).
pub const RELAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const SERVER_MAC: [u8; 6] = [0x02, 0x53, 0x52, 0x56, 0x00, 0x01];
pub const RELAY_MAC: [u8; 6] = [0x02, 0x52, 0x4c, 0x59, 0x00, 0x01];
/// UMEM frame size of the AF_XDP path.
pub const FRAME_SIZE: usize = 2048;

/// First and last address of the one big pool: 10.0.1.0 - 10.15.255.254,
/// 1,048,319 addresses (a /12 minus the first /24 and the broadcast).
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 0);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 15, 255, 254);

/// Configuration of the engine benchmarks: one /12 subnet with a ~1M pool,
/// the options a carrier typically hands out.
pub const CONFIG: &str = r#"
[server]
interface = "lo"
server-id = "10.0.0.1"
lease-file = "/unused"
commit = "ack"

[lease]
default-time = 3600
min-time = 60
max-time = 86400
offer-hold = 30

[[subnet]]
cidr = "10.0.0.0/12"
router = ["10.0.0.1"]
dns-servers = ["192.0.2.53", "192.0.2.54"]
domain-name = "access.example.net"

[[subnet.pool]]
range = "10.0.1.0-10.15.255.254"
"#;

/// [`CONFIG`]'s traffic under a carrier configuration: 20 `[[class]]`es (every matcher kind;
/// the benchmark client, `docsis3.0:...` with a circuit id through a relay in 10.0.0.0/12, is
/// in 5 of them), two shared networks, and the client's ~1M pool placed after four pools its
/// classes may not use in its shared network. Options come from class, pool, subnet and
/// network layers.
pub fn classes_config() -> String {
    let mut c = String::from(
        r#"
[server]
interface = "lo"
server-id = "10.0.0.1"
lease-file = "/unused"
commit = "ack"

[lease]
default-time = 3600
min-time = 60
max-time = 86400
offer-hold = 30
"#,
    );
    // The client's classes (5): by option 60 prefix and substring, option 82 circuit id, giaddr,
    // and unknown.
    c.push_str(
        r#"
[[class]]
name = "cm"
vendor-class-prefix = "docsis"
next-server = "192.0.2.69"
boot-file = "cm.cfg"
log-servers = ["192.0.2.7"]
[[class]]
name = "cm30"
vendor-class-contains = "3.0:"
default-time = 7200
[[class]]
name = "olt1"
circuit-id = "olt1/0/3/17:100.0"
ntp-servers = ["192.0.2.123"]
[[class]]
name = "access"
giaddr = ["10.0.0.0/12"]
[[class]]
name = "unregistered"
known = false
"#,
    );
    // 15 classes it is not in.
    let others = [
        "vendor-class-prefix = \"pktc1.0:\"",
        "vendor-class-contains = \"dslforum.org\"",
        "vendor-class = \"MSFT 5.0\"",
        "user-class = \"iptv\"",
        "user-class-prefix = \"voip\"",
        "circuit-id = \"olt2/0/1/1:1.0\"",
        "remote-id = \"0x001122334455\"",
        "subscriber-id = \"sub-1\"",
        "remote-id-is-chaddr = true",
        "client-id = \"01:00:11:22:33:44:55\"",
        "hw-prefix = \"00:e0:6f\"",
        "giaddr = [\"192.0.2.0/24\"]",
        "known = true",
        "vendor-class-prefix = \"docsis1.0:\"",
        "vendor-class-prefix = \"meter\"",
    ];
    for (i, m) in others.iter().enumerate() {
        c.push_str(&format!(
            "[[class]]\nname = \"other{i}\"\n{m}\nboot-file = \"other{i}.cfg\"\ndomain-name = \"other{i}.example\"\n"
        ));
    }
    // Two shared networks; the client's (giaddr 10.0.0.2 selects 10.0.0.0/12) has four
    // smaller subnets first whose pools deny or do not allow its classes.
    c.push_str(
        r#"
[[shared-network]]
name = "access"
time-servers = ["192.0.2.123"]
time-offset = -10800
[[shared-network]]
name = "cable"
relay-addresses = ["192.0.2.200"]
domain-name = "cable.example.net"
"#,
    );
    for i in 0..4 {
        c.push_str(&format!(
            r#"
[[subnet]]
cidr = "10.{n}.0.0/16"
shared-network = "access"
router = ["10.{n}.0.1"]
[[subnet.pool]]
range = "10.{n}.1.0-10.{n}.1.255"
allow = ["other{i}", "other{j}"]
[[subnet.pool]]
range = "10.{n}.2.0-10.{n}.2.255"
deny = ["cm"]
"#,
            n = 16 + i,
            j = i + 4,
        ));
    }
    c.push_str(
        r#"
[[subnet]]
cidr = "10.0.0.0/12"
shared-network = "access"
router = ["10.0.0.1"]
dns-servers = ["192.0.2.53", "192.0.2.54"]
domain-name = "access.example.net"
[[subnet.pool]]
range = "10.0.1.0-10.15.255.254"
allow = ["cm", "other0"]
deny = ["other1"]
dns-servers = ["192.0.2.55"]

[[subnet]]
cidr = "10.100.0.0/16"
shared-network = "cable"
[[subnet.pool]]
range = "10.100.1.0-10.100.255.254"
allow = ["other0"]
"#,
    );
    c
}

/// Parameter request list of a typical Linux/Windows client (option 55).
pub const PARAMS: [u8; 11] = [1, 3, 6, 15, 26, 28, 42, 51, 58, 59, 119];
/// Vendor class (option 60), a DOCSIS-style string.
pub const VENDOR_CLASS: &[u8] = b"docsis3.0:053501010102";
/// Relay agent circuit id (option 82 sub-option 1).
pub const CIRCUIT_ID: &[u8] = b"olt1/0/3/17:100.0";

/// DHCP message types used here.
pub const DISCOVER: u8 = 1;
pub const REQUEST: u8 = 3;

/// The MAC of simulated client `n` (distinct for every `n < 2^40`).
pub fn client_mac(n: u64) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// What a request looks like. Everything else is fixed and realistic.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    pub kind: u8,
    pub client: u64,
    pub ciaddr: Ipv4Addr,
    /// Relayed (giaddr + option 82) or from a directly attached client.
    pub relayed: bool,
    pub requested: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
}

impl Req {
    pub fn discover(client: u64) -> Self {
        Req {
            kind: DISCOVER,
            client,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            relayed: true,
            requested: None,
            server_id: None,
        }
    }
    /// REQUEST in SELECTING state (after an OFFER of `ip`).
    pub fn select(client: u64, ip: Ipv4Addr) -> Self {
        Req {
            kind: REQUEST,
            requested: Some(ip),
            server_id: Some(SERVER_ID),
            ..Self::discover(client)
        }
    }
    /// REQUEST in RENEWING state (ciaddr set, no 50/54).
    pub fn renew(client: u64, ip: Ipv4Addr) -> Self {
        Req {
            kind: REQUEST,
            ciaddr: ip,
            ..Self::discover(client)
        }
    }
}

/// A built request and where the client identity sits in it, so a
/// benchmark can turn it into another client's request in place.
#[derive(Clone, Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Offset of the 6 MAC bytes inside option 61 (after the type byte).
    pub cid_mac_at: usize,
    /// Offset of the 6 MAC bytes of option 82's remote-id (relayed requests): a relay names
    /// each subscriber, so a template made another client's request carries that client's.
    pub ri_mac_at: Option<usize>,
}

impl Built {
    /// Makes this the request of client `n` (chaddr, option 61, xid).
    pub fn set_client(&mut self, n: u64) {
        set_client_at(&mut self.bytes, 0, self.cid_mac_at, n);
        if let Some(at) = self.ri_mac_at {
            self.bytes[at..at + 6].copy_from_slice(&client_mac(n));
        }
    }
}

/// Patches the client identity of a DHCP payload starting at `base` in `buf`.
pub fn set_client_at(buf: &mut [u8], base: usize, cid_mac_at: usize, n: u64) {
    let mac = client_mac(n);
    buf[base + 4..base + 8].copy_from_slice(&(n as u32).to_be_bytes());
    buf[base + 28..base + 34].copy_from_slice(&mac);
    buf[base + cid_mac_at..base + cid_mac_at + 6].copy_from_slice(&mac);
}

/// [`set_client_at`] on a whole frame (DHCP payload at `off`), keeping its UDP checksum right
/// the way a sender filling a template would (see [`patch_payload`]).
pub fn set_client_in_frame(frame: &mut [u8], off: usize, cid_mac_at: usize, n: u64) {
    let mac = client_mac(n);
    patch_payload(frame, off, 4, &(n as u32).to_be_bytes());
    patch_payload(frame, off, 28, &mac);
    patch_payload(frame, off, cid_mac_at, &mac);
}

/// Writes `new` at `at` in the UDP payload of an IPv4 frame (payload at `off`, the UDP
/// checksum just before it) and updates the checksum incrementally (RFC 1624), so the server's
/// checksum check passes and stays in the measured cost while the patch costs a few
/// instructions.
pub fn patch_payload(frame: &mut [u8], off: usize, at: usize, new: &[u8]) {
    let pos = off + at;
    // The payload starts 8 bytes into the UDP header: `at`'s parity is the word alignment.
    let odd = at % 2 == 1;
    let old = word_sum(&frame[pos..pos + new.len()], odd);
    frame[pos..pos + new.len()].copy_from_slice(new);
    let check = u16::from_be_bytes([frame[off - 2], frame[off - 1]]);
    if check == 0 {
        return; // no checksum
    }
    // HC' = ~(~HC + ~m + m')
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(word_sum(new, odd));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    frame[off - 2..off].copy_from_slice(&c.to_be_bytes());
}

/// One's complement sum of `b` as 16-bit words; `odd`: `b[0]` is the low byte of a word.
fn word_sum(b: &[u8], odd: bool) -> u16 {
    let mut sum = 0u32;
    for (i, &x) in b.iter().enumerate() {
        sum += if (i % 2 == 1) != odd {
            u32::from(x)
        } else {
            u32::from(x) << 8
        };
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Builds the DHCP payload of `r`: options 53, 61, (50, 54), 57, 55 (11
/// codes), 60, 12, 82 (circuit and remote id) when relayed, END, padded to
/// 300 bytes as real clients do.
pub fn build(r: &Req) -> Built {
    let mac = client_mac(r.client);
    let mut b = vec![0u8; 240];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&(r.client as u32).to_be_bytes());
    b[12..16].copy_from_slice(&r.ciaddr.octets());
    if r.relayed {
        b[3] = 1; // hops
        b[24..28].copy_from_slice(&RELAY.octets());
    }
    b[28..34].copy_from_slice(&mac);
    b[236..240].copy_from_slice(&xdhcpd_dhcpv4::wire::MAGIC_COOKIE);
    let put = |b: &mut Vec<u8>, code: u8, val: &[u8]| {
        b.push(code);
        b.push(val.len() as u8);
        b.extend_from_slice(val);
    };
    put(&mut b, 53, &[r.kind]);
    let cid_mac_at = b.len() + 3;
    let mut cid = [1u8; 7];
    cid[1..].copy_from_slice(&mac);
    put(&mut b, 61, &cid);
    if let Some(ip) = r.requested {
        put(&mut b, 50, &ip.octets());
    }
    if let Some(ip) = r.server_id {
        put(&mut b, 54, &ip.octets());
    }
    put(&mut b, 57, &1500u16.to_be_bytes());
    put(&mut b, 55, &PARAMS);
    put(&mut b, 60, VENDOR_CLASS);
    put(&mut b, 12, b"cpe-0a1b2c");
    let mut ri_mac_at = None;
    if r.relayed {
        let mut ri = Vec::with_capacity(32);
        ri.push(1);
        ri.push(CIRCUIT_ID.len() as u8);
        ri.extend_from_slice(CIRCUIT_ID);
        ri.push(2);
        ri.push(6);
        // code, length, then the value: the remote-id's MAC is the value's last 6 bytes.
        ri_mac_at = Some(b.len() + 2 + ri.len());
        ri.extend_from_slice(&mac);
        put(&mut b, 82, &ri);
    }
    b.push(255);
    if b.len() < 300 {
        b.resize(300, 0);
    }
    Built {
        bytes: b,
        cid_mac_at,
        ri_mac_at,
    }
}

/// The IPv4/UDP addresses a request of `r` travels with.
pub fn request_addrs(r: &Req) -> Ipv4UdpAddrs {
    if r.relayed {
        Ipv4UdpAddrs {
            src_mac: RELAY_MAC,
            dst_mac: SERVER_MAC,
            src_ip: RELAY,
            dst_ip: SERVER_ID,
            src_port: 67,
            dst_port: 67,
        }
    } else {
        Ipv4UdpAddrs {
            src_mac: client_mac(r.client),
            dst_mac: frame::BROADCAST_MAC,
            src_ip: if r.ciaddr.is_unspecified() {
                Ipv4Addr::UNSPECIFIED
            } else {
                r.ciaddr
            },
            dst_ip: if r.ciaddr.is_unspecified() {
                Ipv4Addr::BROADCAST
            } else {
                SERVER_ID
            },
            src_port: 68,
            dst_port: 67,
        }
    }
}

/// An Ethernet frame carrying `payload`, with the given VLAN tags (raw
/// TPID+TCI bytes), in a `FRAME_SIZE` buffer. Returns (buffer, frame length).
pub fn frame_around(
    payload: &[u8],
    vlan_tags: &[u8],
    addrs: &Ipv4UdpAddrs,
) -> Result<(Vec<u8>, usize), frame::FrameTooSmall> {
    let mut f = vec![0u8; FRAME_SIZE];
    let off = FrameLayout::new(vlan_tags.len()).payload_offset();
    let end = off + payload.len();
    if end > f.len() {
        return Err(frame::FrameTooSmall {
            have: f.len(),
            need: end,
        });
    }
    f[off..end].copy_from_slice(payload);
    let n = frame::write_ipv4_udp_headers(&mut f, vlan_tags, addrs, payload.len())?;
    Ok((f, n))
}

/// An engine's world: the configuration and a large lease table in a file.
pub struct EngineFixture {
    pub shared: Arc<EngineShared>,
    pub table: Arc<LeaseTable>,
    /// Time `LeaseTable::open` took (create + index build).
    pub open_time: Duration,
}

impl EngineFixture {
    /// Parses [`CONFIG`] and opens (creates) the lease table at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        Self::open_with(path, CONFIG)
    }

    /// Parses `config` and opens (creates) the lease table at `path`.
    pub fn open_with(path: &Path, config: &str) -> Result<Self, String> {
        let cfg = xdhcpd_config::parse(config, "benches/CONFIG")
            .map_err(|e| format!("bench configuration: {e}"))?;
        let cfg = Arc::new(cfg);
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let t0 = Instant::now();
        let table = open_table_with(path, &pools)?;
        let open_time = t0.elapsed();
        let table = Arc::new(table);
        let shared = Arc::new(EngineShared::new(cfg, table.clone(), SERVER_ID));
        Ok(EngineFixture {
            shared,
            table,
            open_time,
        })
    }

    /// A worker's engine (shard 0).
    pub fn engine(&self) -> Engine {
        Engine::new(self.shared.clone(), 0, Arc::new(EngineStats::default()))
    }
}

/// The one big pool as the lease store sees it (id 1).
pub fn big_pool() -> PoolSpec {
    PoolSpec {
        id: 1,
        first: POOL_FIRST,
        last: POOL_LAST,
    }
}

/// Opens (creates) a table at `path` for `pools`, one shard, clock [`NOW`].
pub fn open_table_with(path: &Path, pools: &[PoolSpec]) -> Result<LeaseTable, String> {
    let opts = OpenOptions {
        now: NOW,
        ..OpenOptions::default()
    };
    LeaseTable::open(path, pools, &opts)
        .map(|(t, _)| t)
        .map_err(|e| format!("open lease table {}: {e}", path.display()))
}

/// Gives `slots` back to the free lists (untimed cleanup between timed
/// chunks, so the pool never runs out however long criterion runs).
pub fn free_slots(table: &LeaseTable, slots: &[Slot]) {
    for &s in slots {
        table.update(s, |l| {
            l.state = LeaseState::Free;
            l.clear_binding();
        });
    }
}

/// Runs `iters` iterations for criterion's `iter_custom` in chunks of at
/// most `chunk`: `run(n)` does `n` iterations, with its own untimed set-up
/// and clean-up around them, and returns the time of the timed part alone.
/// Chunks keep the clean-up (addresses given back, say) out of the figure
/// however many iterations criterion asks for.
pub fn in_chunks(iters: u64, chunk: u64, mut run: impl FnMut(u64) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        total += run(n);
        left -= n;
    }
    total
}

/// Reads a `kB` line (e.g. `VmRSS:`) of /proc/self/status, in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcpd_dhcpv4::wire::{Message, MessageType};
    use xdhcpd_io::frame::RxFrame;

    #[test]
    fn built_requests_parse_with_both_parsers() {
        let mut d = build(&Req::discover(7));
        d.set_client(0x0001_0203_0405);
        let m = Message::new_checked(&d.bytes).unwrap();
        let s = m.summary().unwrap();
        assert_eq!(s.message_type, Some(MessageType::Discover));
        assert_eq!(m.chaddr(), &client_mac(0x0001_0203_0405));
        assert_eq!(&s.client_id.unwrap()[1..], &client_mac(0x0001_0203_0405));
        assert_eq!(s.parameter_list, Some(&PARAMS[..]));
        assert!(s.relay_agent_info.is_some());
        use dhcproto::{v4, Decodable, Decoder};
        let o = v4::Message::decode(&mut Decoder::new(&d.bytes)).unwrap();
        assert!(o
            .opts()
            .get(v4::OptionCode::RelayAgentInformation)
            .is_some());
        assert!(d.bytes.len() >= 300, "shorter than a BOOTP minimum");
    }

    #[test]
    fn frames_parse_back() {
        let r = Req::discover(1);
        let d = build(&r);
        for tags in [&[][..], &[0x81, 0x00, 0x00, 0x64][..]] {
            let (f, n) = frame_around(&d.bytes, tags, &request_addrs(&r)).unwrap();
            let rx = xdhcpd_io::frame::RxFrame::parse(&f[..n]).unwrap();
            assert_eq!(rx.payload, &d.bytes[..]);
            assert_eq!(rx.vlan_tags(), tags);
        }
    }

    #[test]
    fn patched_frames_keep_a_valid_udp_checksum() {
        let r = Req::discover(0);
        let tpl = build(&r);
        let (mut f, n) = frame_around(&tpl.bytes, &[], &request_addrs(&r)).expect("frame");
        let off = FrameLayout::new(0).payload_offset();
        for client in [1u64, 2, 0xfedc_ba98, 77] {
            set_client_in_frame(&mut f, off, tpl.cid_mac_at, client);
            patch_payload(&mut f, off, 12, &[10, 0, client as u8, 1]);
            patch_payload(&mut f, off, 13, &[0xab]);
            assert!(RxFrame::parse(&f[..n]).is_ok(), "client {client}");
        }
    }
}
