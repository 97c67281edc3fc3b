//! xdhcpd-config: the daemon's configuration, a TOML file turned into
//! ready-to-use values.
//!
//! [`parse`] / [`load`] validate the whole file and report *every* semantic
//! error with file, line, column and field path (syntax errors stop the run).
//! The result is built for the packet path: each subnet's options are encoded
//! once ([`SubnetOptions`]) and subnet lookup by address is a binary search.
//!
//! The format is documented by `userspace/examples/demo.toml` and
//! `userspace/examples/relay.toml`.
#![forbid(unsafe_code)]

mod api;
mod bulk_leasequery;
mod error;
mod failover;
mod limits;
mod net;
mod options;
mod provisioning;
#[cfg(test)]
mod provisioning_tests;
mod ratelimit;
mod reader;
mod reconfigure;
mod schema;
#[cfg(test)]
mod tests;
mod v6;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use api::ApiConfig;
pub use bulk_leasequery::{BulkLeasequeryConfig, LeasequeryTls, LeasequeryTlsMode};
pub use error::{ConfigError, ConfigErrors, Position};
pub use failover::{
    FailoverConfig, FailoverRole, PartnerSoftware, PoolBalanceCfg, RelayHealthConfig,
    MAX_RELATIONSHIPS,
};
pub use limits::{LimitsConfig, DEFAULT_XDP_KNOWN_MACS};
pub use net::{Ipv4Net, NetParseError};
pub use options::{OptionError, SubnetOptions};
pub use provisioning::{
    BytesMatch, Class, ClassId, ClassMatch, ClassSet, Host, PoolRules, Settings, SharedNetwork,
    TimeOverride, MAX_CLASSES,
};
pub use ratelimit::RateLimitConfig;
pub use reconfigure::{ReconfigureConfig, ReconfigureOverride};
pub use schema::schema_keys;
pub use v6::{
    in_prefix6, parse_prefix6, PdPool6, PoolAccess6, Reservation6, Subnet6, V6Config,
    VendorOption6, DEFAULT_LEASE_FILE6,
};

/// The example configuration used by `cargo xtask demo` when none is given.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");
/// An example with two relayed subnets selected by giaddr.
pub const RELAY_CONFIG: &str = include_str!("../../examples/relay.toml");
/// The demo's link served over DHCPv4 and DHCPv6 (address and prefix pools).
pub const DUAL_STACK_CONFIG: &str = include_str!("../../examples/dual-stack.toml");
/// Cable provisioning (classes, a shared network, registrations): the PROV guide's example.
pub const PROV_CONFIG: &str = include_str!("../../examples/prov.toml");

/// Option codes the server fills in itself (per lease or per message), or that
/// only clients and relays send; a configuration may not set them.
pub const SERVER_OWNED_OPTIONS: &[u8] = &[50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82];

/// Reads and validates the file at `path`; errors name the path as given.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: name.clone(),
            position: None,
            field: String::new(),
            message: format!("cannot read configuration: {e}"),
        }],
    })?;
    let mut cfg = parse(&text, &name)?;
    cfg.source = path.to_path_buf();
    Ok(cfg)
}

/// Validates `text`; `source_name` is used in error messages and as `Config::source`.
pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigErrors> {
    schema::build(text, source_name)
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    /// The failover relationships: none, the single `[failover]` table, or up to
    /// [`MAX_RELATIONSHIPS`] `[[failover]]` entries (N:1 backup). Each covers the subnets in
    /// its `subnets` list (`Subnet::failover` is the reverse).
    pub failovers: Vec<FailoverConfig>,
    /// `[rate-limit]`: XDP token buckets per client and per relay (default: none).
    pub rate_limit: RateLimitConfig,
    /// `[limits]`: lease caps per circuit / remote-id, the XDP drop of unknown clients.
    pub limits: LimitsConfig,
    /// `[reconfigure]`: server-initiated reconfiguration (FORCERENEW); None = off.
    pub reconfigure: Option<ReconfigureConfig>,
    /// The control API and `/metrics` (`[api]`; defaults when absent).
    pub api: ApiConfig,
    /// `[bulk-leasequery]`: RFC 6926 bulk leasequery over TCP; None = off.
    pub bulk_leasequery: Option<BulkLeasequeryConfig>,
    /// Global lease-time defaults (each subnet carries its merged copy).
    pub lease: LeaseTimes,
    /// `[lease] spare-addresses`: spare records the lease file keeps for pools and grown
    /// ranges a reload adds (None: the default, see [`Config::lease_spare_addresses`]).
    pub lease_spare: Option<u32>,
    /// In file order; `subnets[i].index == i`. Do not add or remove subnets after
    /// loading: the lookup index below is built once.
    pub subnets: Vec<Subnet>,
    /// `[[class]]` in file order; `classes[i].id == i`; at most [`MAX_CLASSES`].
    pub classes: Vec<Class>,
    /// `[[shared-network]]` in file order; `shared_networks[i].index == i`.
    pub shared_networks: Vec<SharedNetwork>,
    /// `[[host]]`: registered clients without a fixed address.
    pub hosts: Vec<Host>,
    /// `[event-log]`: the lease event log (None: no event log).
    pub event_log: Option<EventLogConfig>,
    /// `[alarms]`: thresholds of the alarms logged (and counted) by the daemon.
    pub alarms: AlarmsConfig,
    /// `[registrations] backend`: where registrations come from (default: the local store).
    pub registrations: RegistrationBackend,
    pub source: PathBuf,
    lookup: SubnetLookup,
    /// DHCPv6: `[dhcpv6]` and `[[subnet6]]` (no subnet6: not served).
    pub v6: V6Config,
}

/// `[event-log]`: JSON lines of lease events in `directory`, rotated by size and age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogConfig {
    /// `directory` (default `/var/lib/xdhcpd/events`): the current file is `events.jsonl`,
    /// rotated ones `events-<unix time>.jsonl`.
    pub directory: PathBuf,
    /// `max-size-mb` (default 64): rotate when the current file reaches this size.
    pub max_size_mb: u32,
    /// `max-age-hours` (default 24; 0 = never by age): rotate a file this old.
    pub max_age_hours: u32,
    /// `keep` (default 30): rotated files kept (the oldest are deleted).
    pub keep: u32,
    /// `[event-log.nats]`: also publish every event to NATS JetStream (None: off).
    pub nats: Option<NatsConfig>,
}

/// `[event-log.nats]`: the lease events published to a NATS JetStream stream, through a local
/// on-disk spool (sent in order once NATS is reachable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// `urls`: one or more server URLs (`nats://host:4222`), tried in turn.
    pub urls: Vec<String>,
    /// `stream` (default `XDHCPD_EVENTS`): the JetStream stream.
    pub stream: String,
    /// `subject-prefix` (default `xdhcpd.events`): subjects are
    /// `<prefix>.<server-name>.<subnet>.<event>`.
    pub subject_prefix: String,
    /// `server-name` (default: `server.server-id` with `-` for `.`, else the host name): this
    /// server's subject token.
    pub server_name: Option<String>,
    /// `token-file`: an authentication token, first line of the file.
    pub token_file: Option<PathBuf>,
    /// `credentials-file`: a NATS `.creds` file (JWT + NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// `user` and `password-file` (first line): user/password authentication.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `tls = "require"` (with `ca-file`, optional `cert-file` / `key-file`): TLS to every
    /// server; None: as the URL says (`tls://` needs TLS, verified against the system's CAs).
    pub tls: Option<TlsClientConfig>,
    /// `batch-size` (default 256): messages published before waiting for their acks.
    pub batch_size: u32,
    /// `events-per-message` (default 100): lease events carried by one NATS message (a JSON
    /// array on `<prefix>.<server>.<subnet>.batch`); 1: one message per event on
    /// `<prefix>.<server>.<subnet>.<event>` (the format before batching).
    pub events_per_message: u32,
    /// `spool-directory` (default `<directory>/nats-spool`).
    pub spool_directory: Option<PathBuf>,
    /// `spool-max-mb` (default 1024): unsent events kept at most; beyond, new events are not
    /// spooled (counted and logged; they stay in the local event log).
    pub spool_max_mb: u32,
    /// `create-stream` (default true): create the stream if it does not exist.
    pub create_stream: bool,
    /// `ack-timeout-secs` (default 5): how long a batch waits for JetStream's acks.
    pub ack_timeout_secs: u32,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: Vec::new(),
            stream: "XDHCPD_EVENTS".into(),
            subject_prefix: "xdhcpd.events".into(),
            server_name: None,
            token_file: None,
            credentials_file: None,
            user: None,
            password_file: None,
            tls: None,
            batch_size: 256,
            events_per_message: 100,
            spool_directory: None,
            spool_max_mb: 1024,
            create_stream: true,
            ack_timeout_secs: 5,
        }
    }
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig {
            directory: PathBuf::from("/var/lib/xdhcpd/events"),
            max_size_mb: 64,
            max_age_hours: 24,
            keep: 30,
            nats: None,
        }
    }
}

/// `[registrations] backend`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistrationBackend {
    /// `"local"`: the registration store (`server.registration-file`) is the truth, changed
    /// through the control API.
    #[default]
    Local,
    /// `"postgres"`: PostgreSQL is the truth; the daemon follows it into the registration
    /// store, its local copy (served from when PostgreSQL is down).
    Postgres(Box<PostgresConfig>),
}

/// `[registrations.postgres]`: the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `host`: name, address, or (starting with `/`) the directory of a UNIX socket.
    pub host: String,
    /// `port` (default 5432).
    pub port: u16,
    /// `dbname`.
    pub dbname: String,
    /// `user`.
    pub user: String,
    /// `password-file`: the password is its first line (never inline in the configuration).
    pub password_file: Option<PathBuf>,
    /// `tls` (default `"disable"`; `"require"` with `ca-file`, optional `cert-file` /
    /// `key-file`).
    pub tls: PostgresTls,
    /// `connect-timeout-secs` (default 5).
    pub connect_timeout_secs: u32,
    /// `migrate` (default true): apply the schema's pending migrations when connecting.
    pub migrate: bool,
    /// `groups` (default: every registration): load and follow only the registrations whose
    /// `group` is one of these (a server keeps only what its pair needs).
    pub groups: Option<Vec<String>>,
}

/// TLS to PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresTls {
    /// Plain TCP or a UNIX socket.
    Disable,
    /// `tls = "require"`: TLS or no connection; the server's certificate is verified against
    /// `ca-file` and the host name (or address) of `host`.
    Require(TlsClientConfig),
}

/// A backend's TLS client settings (`tls = "require"`, `ca-file`, `cert-file`, `key-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsClientConfig {
    /// `ca-file`: PEM certificate(s) of the CA(s) that sign the server's certificate (the only
    /// trust anchors: the system's store is not used).
    pub ca_file: PathBuf,
    /// `cert-file`: this client's certificate chain (PEM), for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    /// `key-file`: the key of `cert-file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// `[alarms]`: when the daemon logs (and counts) an alarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmsConfig {
    /// `pool-utilisation-pct` (default 90): a pool whose used share reaches this.
    pub pool_utilisation_pct: u8,
    /// `partner-unreachable-secs` (default 30): failover partner without contact this long.
    pub partner_unreachable_secs: u32,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            pool_utilisation_pct: 90,
            partner_unreachable_secs: 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub interface: String,
    pub io: IoMode,
    pub xdp_mode: XdpModeCfg,
    pub queues: QueueSel,
    /// `None`: use the interface's first IPv4 address (resolved at run time).
    pub server_id: Option<Ipv4Addr>,
    pub lease_file: PathBuf,
    pub commit: CommitMode,
    /// `commit-min-gap-us`: at least this long between the starts of two light group commits
    /// in ack mode (default 0: sync as often as the device allows). For devices that stall
    /// when synced thousands of times a second (one VM here: at ~3,300 syncs/s its disk stalled
    /// ~10 times a second for 10-100 ms, below ~1,700/s not). A lone request after a quiet
    /// spell is committed at once, and under load (commits carrying 64+ changes on average)
    /// the gap steps aside.
    pub commit_min_gap: Duration,
    /// `worker-slice-us`: the scheduler slice the packet threads (workers, the committer)
    /// ask for (default 100 µs; 0: the kernel's default). A short slice lets a worker woken by a
    /// packet preempt a background thread within about that long (Linux 6.12+ EEVDF; older
    /// kernels ignore it). Measured: DORA p99 at 80,000/s 1.5 ms -> 0.8 ms.
    pub worker_slice: Duration,
    /// `background-nice`: nice value of the maintenance threads (expiry sweep, checkpoint,
    /// API, leasequery TCP, reconfigure, PostgreSQL follower; default 10, 0: as the workers),
    /// so that they yield the core to the packet path. With the slice: p99 0.8 ms -> 0.4 ms.
    pub background_nice: u8,
    /// `commit-coalesce-us`: under load in ack mode (group commits carrying 16+ record
    /// changes on average), the time from the end of one group commit to the start of the
    /// next, so that each carries more (default 200 µs; 0: back to back). A lone request
    /// after a quiet spell, and light load, are committed at once.
    pub commit_coalesce: Duration,
    /// `commit-coalesce-max-us`: the longest coalescing wait (default 1000 µs, never below
    /// `commit-coalesce-us`). Above 100,000 record changes a second (measured over the last
    /// ~8 group commits) the wait grows in proportion to the rate, from `commit-coalesce-us`
    /// up to this: the busier the server, the fewer syncs per exchange (each costs the core
    /// about the same whatever it carries). Equal to `commit-coalesce-us`: a fixed wait.
    pub commit_coalesce_max: Duration,
    pub ebpf_object: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    /// `registration-file`: the registration store (snapshot; its log is `PATH.log`).
    /// `None`: no registrations (every client is unknown).
    pub registration_file: Option<PathBuf>,
    /// `trusted-relays`: the giaddrs whose relayed messages are served and whose relay data
    /// (option 82, its link-selection sub-option, option 118) is honoured. `None`: what the
    /// subnets imply (see [`Config::trusted_relays`]).
    pub trusted_relays: Option<Vec<Ipv4Net>>,
    /// `untrusted-relay-info`: what to do with option 82 from a client that is not behind a
    /// relay (giaddr 0; RFC 3046 §2.1).
    pub untrusted_relay_info: UntrustedRelayInfo,
    /// `leasequery-allow`: the giaddrs whose DHCPLEASEQUERYs are answered (RFC 4388 §6).
    /// `None`: the trusted relays.
    pub leasequery_allow: Option<Vec<Ipv4Net>>,
    /// `user`: the account the daemon switches to once everything that needs root is done
    /// (XDP attached, sockets bound, files opened). `None`: it stays as started.
    pub user: Option<Account>,
    /// `group`: the group it switches to with `user` (default: the user's primary group).
    pub group: Option<Account>,
}

/// A user or group name from the configuration and where it was written: the daemon looks
/// the name up (system accounts: NSS) and reports an unknown one at this position.
#[derive(Clone, Debug, Eq)]
pub struct Account {
    pub name: String,
    pub position: Position,
}

/// Two accounts are the same when they name the same account (wherever it was written).
impl PartialEq for Account {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Option 82 in a message with giaddr 0: only a relay agent adds it, so a client sent it
/// itself (RFC 3046 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntrustedRelayInfo {
    /// Drop the message (RFC 3046 §2.1's rule for relay agents; the default).
    Drop,
    /// Serve the message as if option 82 (with its link selection) were absent.
    Strip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// XDP when it can be attached, else kernel UDP (with a logged reason).
    Auto,
    Xdp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeCfg {
    Auto,
    Driver,
    Skb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueSel {
    All,
    /// The first N RX queues (N >= 1).
    First(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// A lease is on stable storage before its ACK leaves.
    Ack,
    /// Flush dirty records at this interval (1 ms ..= 60 s).
    Interval(Duration),
}

/// Lease times in seconds.
///
/// Invariants after validation: `1 <= min <= default <= max < 2^31`,
/// `0 < renewal_factor < rebinding_factor < 1`, `offer_hold >= 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseTimes {
    pub default: u32,
    pub min: u32,
    pub max: u32,
    pub renewal_factor: f64,
    pub rebinding_factor: f64,
    pub offer_hold: u32,
    pub decline_quarantine: u32,
    pub authoritative: bool,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes {
            default: 3600,
            min: 60,
            max: 86400,
            renewal_factor: 0.5,
            rebinding_factor: 0.875,
            offer_hold: 30,
            decline_quarantine: 3600,
            authoritative: true,
        }
    }
}

impl LeaseTimes {
    /// The lease to grant for a client's requested time (option 51), if any.
    #[inline]
    pub fn lease_for(&self, requested: Option<u32>) -> u32 {
        match requested {
            Some(r) => r.clamp(self.min, self.max),
            None => self.default,
        }
    }

    /// T1 (option 58) for a lease of `lease` seconds.
    #[inline]
    pub fn t1(&self, lease: u32) -> u32 {
        (f64::from(lease) * self.renewal_factor) as u32
    }

    /// T2 (option 59) for a lease of `lease` seconds.
    #[inline]
    pub fn t2(&self, lease: u32) -> u32 {
        (f64::from(lease) * self.rebinding_factor) as u32
    }
}

#[derive(Clone, Debug)]
pub struct Subnet {
    /// Position in the file (`subnet[index]`) and in `Config::subnets`.
    pub index: usize,
    pub net: Ipv4Net,
    /// Extra giaddrs (outside `net`) that select this subnet.
    pub relay_addresses: Vec<Ipv4Addr>,
    /// Global `[lease]` merged with this subnet's overrides.
    pub times: LeaseTimes,
    pub pools: Vec<Pool>,
    pub reservations: Vec<Reservation>,
    /// `siaddr` in replies.
    pub next_server: Option<Ipv4Addr>,
    /// The BOOTP `file` field (also option 67); at most 127 bytes.
    pub boot_file: Option<String>,
    /// Encoded options, including 1 (mask) and 28 (broadcast) derived from `net`.
    pub options: SubnetOptions,
    /// Failover `backup-pct` of this scope (primary only); None = the `[failover]` value.
    pub backup_pct: Option<u8>,
    /// Failover `backup-allocation-boundary` (primary only): the backup's addresses are taken
    /// below it, highest first. Inside one of `pools`. None = the middle of each pool.
    pub backup_allocation_boundary: Option<Ipv4Addr>,
    /// Class rules and settings of each pool (parallel to `pools`).
    pub pool_rules: Vec<PoolRules>,
    /// The `[[shared-network]]` this subnet belongs to (index into `Config::shared_networks`).
    pub shared_network: Option<usize>,
    /// `deny-unknown`: unregistered clients draw from none of this subnet's pools.
    pub deny_unknown: bool,
    /// `dynamic-bootp` (default false): BOOTP requests (no option 53) get a permanent
    /// address from this subnet's pools (RFC 2131 §4.1); off, BOOTP is refused. In a failover
    /// scope each partner then allocates only its own addresses, in every state (draft-12
    /// 5.14).
    pub dynamic_bootp: bool,
    /// `reconfigure-retries` / `reconfigure-first-retry-ms`: this subnet's FORCERENEW
    /// schedule over `[reconfigure]`'s.
    pub reconfigure: ReconfigureOverride,
    /// The failover relationship covering this subnet (index into `Config::failovers`);
    /// None: served without failover (`failover = "none"`, or no failover configured).
    pub failover: Option<usize>,
}

/// An inclusive address range. `id` is the pool's position in the file
/// (counting across all subnets), so ids are unique and stable while the
/// file's pools keep their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub id: u32,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Pool {
    /// Number of addresses (at most 2^24).
    pub fn size(&self) -> u32 {
        // Total even for a hand-built pool that breaks the first <= last invariant.
        u32::from(self.last)
            .wrapping_sub(u32::from(self.first))
            .saturating_add(1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub key: ReservationKey,
    pub ip: Ipv4Addr,
    /// `group`: the class this registration puts the client in.
    pub group: Option<ClassId>,
}

/// How a reserved client is recognised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReservationKey {
    /// Ethernet hardware address (chaddr with htype 1, hlen 6).
    Hw([u8; 6]),
    /// Option 61 bytes exactly as the client sends them (type byte included).
    ClientId(Vec<u8>),
}

/// Sorted ranges for `subnet_for`: subnets do not overlap, and relay addresses
/// are unique, so a binary search finds the only candidate.
#[derive(Clone, Debug, Default)]
struct SubnetLookup {
    /// (first, last, subnet index), sorted by first.
    nets: Vec<(u32, u32, usize)>,
    /// (relay address, subnet index), sorted by address.
    relays: Vec<(u32, usize)>,
}

impl SubnetLookup {
    fn build(subnets: &[Subnet]) -> Self {
        let mut nets: Vec<_> = subnets
            .iter()
            .map(|s| (s.net.first_u32(), s.net.last_u32(), s.index))
            .collect();
        nets.sort_unstable();
        let mut relays: Vec<_> = subnets
            .iter()
            .flat_map(|s| {
                s.relay_addresses
                    .iter()
                    .map(move |r| (u32::from(*r), s.index))
            })
            .collect();
        relays.sort_unstable();
        SubnetLookup { nets, relays }
    }

    fn find(&self, ip: u32) -> Option<usize> {
        let i = self.nets.partition_point(|&(first, _, _)| first <= ip);
        if let Some(&(_, last, idx)) = i.checked_sub(1).and_then(|j| self.nets.get(j)) {
            if ip <= last {
                return Some(idx);
            }
        }
        self.relays
            .binary_search_by_key(&ip, |&(a, _)| a)
            .ok()
            .map(|j| self.relays[j].1)
    }
}

impl Config {
    /// The failover relationship named `name`.
    pub fn failover_named(&self, name: &str) -> Option<&FailoverConfig> {
        self.failovers.iter().find(|f| f.name == name)
    }

    /// Every subnet is covered by the one relationship (the single `[failover]` form without
    /// `failover = "none"` anywhere): the packet path needs no per-subnet choice.
    pub fn failover_everywhere(&self) -> bool {
        self.failovers.len() == 1 && self.subnets.iter().all(|s| s.failover == Some(0))
    }

    /// The subnet selected by `addr` (giaddr, link-selection, or the receiving
    /// interface's address): the subnet whose cidr contains it, else the one
    /// listing it in `relay-addresses`.
    #[inline]
    pub fn subnet_for(&self, addr: Ipv4Addr) -> Option<&Subnet> {
        self.lookup
            .find(u32::from(addr))
            .and_then(|i| self.subnets.get(i))
    }

    /// The giaddrs trusted as relay agents: `server.trusted-relays` when set, else what the
    /// subnets imply (every address that selects a subnet as giaddr: each `cidr` and each
    /// `relay-addresses` entry).
    pub fn trusted_relays(&self) -> Vec<Ipv4Net> {
        if let Some(list) = &self.server.trusted_relays {
            return list.clone();
        }
        self.subnets
            .iter()
            .flat_map(|s| {
                std::iter::once(s.net).chain(
                    s.relay_addresses
                        .iter()
                        .map(|a| Ipv4Net::truncating(*a, 32)),
                )
            })
            .collect()
    }

    /// The giaddrs whose leasequeries are answered: `server.leasequery-allow` when set, else
    /// [`Config::trusted_relays`].
    pub fn leasequery_allow(&self) -> Vec<Ipv4Net> {
        match &self.server.leasequery_allow {
            Some(list) => list.clone(),
            None => self.trusted_relays(),
        }
    }

    /// Every pool as `(id, first, last)`, in id order.
    pub fn pool_specs(&self) -> Vec<(u32, Ipv4Addr, Ipv4Addr)> {
        self.subnets
            .iter()
            .flat_map(|s| s.pools.iter().map(|p| (p.id, p.first, p.last)))
            .collect()
    }

    /// Spare records the lease file keeps beyond the configured pools' addresses, so a reload
    /// can add pools and grow ranges without a restart: `[lease] spare-addresses`, by default
    /// the larger of 1024 and a quarter of the configured addresses.
    pub fn lease_spare_addresses(&self) -> u32 {
        self.lease_spare.unwrap_or_else(|| {
            let total: u64 = self
                .pool_specs()
                .iter()
                .map(|(_, a, b)| u64::from(u32::from(*b)) - u64::from(u32::from(*a)) + 1)
                .sum();
            (total / 4).clamp(1024, 1 << 24) as u32
        })
    }

    /// The pool with this id and its subnet.
    pub fn pool(&self, id: u32) -> Option<(&Subnet, &Pool)> {
        self.subnets
            .iter()
            .find_map(|s| s.pools.iter().find(|p| p.id == id).map(|p| (s, p)))
    }

    /// The subnet and pool holding `ip`, if any.
    pub fn pool_of(&self, ip: Ipv4Addr) -> Option<(&Subnet, &Pool)> {
        let s = self.subnet_for(ip).filter(|s| s.net.contains(ip))?;
        s.pools.iter().find(|p| p.contains(ip)).map(|p| (s, p))
    }
}
