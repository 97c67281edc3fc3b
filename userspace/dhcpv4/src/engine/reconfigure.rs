//! Server-initiated reconfiguration, DHCPv4 (RFC 3203 FORCERENEW), sans-IO.
//!
//! - The FORCERENEW message ([`write_forcerenew`]) with its authentication option: the
//!   RFC 6704 per-client reconfigure key (protocol 3, HMAC-MD5 over the message, RFC 3118
//!   §2 rules: MAC, hops and giaddr zeroed), or the RFC 3118 §4 configuration token.
//! - The per-client key ([`ReconfKeys::key_for`]): derived from the server's secret and the
//!   binding (client key and address), so it survives restarts without room in the record;
//!   sent in the ACK (protocol 3, RDM 0, type 1) to clients whose REQUEST carried option 145
//!   with HMAC-MD5 ([`key_option`]), noted by [`FLAG_RECONF_KEY`] on the record.
//! - The binding's `reconfiguring` state: [`FLAG_RECONFIGURING`] on the record (survives
//!   restarts; the spec's event table is applied by the engine in `Engine::reconfiguring`).
//! - The retry schedule ([`Retry`]) and the campaign ([`Reconfigurer`]): triggers, rate,
//!   retries, abort (`clear-on-abort`, `deferred-nak`), counters. Driven by a clock value.
//! - [`ReconfBook`]: per-slot xid and relay of the binding's last ACK (in memory; dhcpcd
//!   accepts a FORCERENEW only with the xid of its last exchange).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use lease_store::{
    ClientKey, Lease, LeaseState, LeaseTable, Slot, FLAG_RECONFIGURING, FLAG_RECONF_KEY,
};
use xdhcpd_config::ReconfigureConfig;

use crate::md5::hmac_md5;
use crate::wire::{opt, MessageType, NoRoom, MAGIC_COOKIE, OP_BOOTREPLY};

/// RFC 3118 protocol 0: configuration token.
pub const AUTH_PROTO_TOKEN: u8 = 0;
/// RFC 6704 / RFC 3315 protocol 3: reconfigure key.
pub const AUTH_PROTO_RECONFIGURE_KEY: u8 = 3;
/// Algorithm 1: HMAC-MD5.
pub const AUTH_ALG_HMAC_MD5: u8 = 1;
/// Reconfigure key option type 1: the key itself (in an ACK).
pub const RECONF_KEY_VALUE: u8 = 1;
/// Reconfigure key option type 2: an HMAC-MD5 digest (in a FORCERENEW).
pub const RECONF_KEY_HMAC: u8 = 2;
/// Length of the option 90 value carrying a reconfigure key or digest.
pub const KEY_OPTION_LEN: usize = 3 + 8 + 1 + 16;

/// Whether option 145 (RFC 6704 FORCERENEW nonce capable) lists HMAC-MD5.
pub fn nonce_capable(opt145: Option<&[u8]>) -> bool {
    opt145.is_some_and(|v| v.contains(&AUTH_ALG_HMAC_MD5))
}

/// The server's key derivation: one secret, a 16-byte key per binding.
#[derive(Clone)]
pub struct ReconfKeys {
    secret: Vec<u8>,
}

impl ReconfKeys {
    /// Keys derived from `secret` (16-64 bytes, kept by the daemon or configured).
    pub fn new(secret: &[u8]) -> Self {
        ReconfKeys {
            secret: secret.to_vec(),
        }
    }

    /// The RFC 6704 reconfigure key of `client` bound to `addr`:
    /// HMAC-MD5(secret, "xdhcpd-forcerenew-1" | key kind | key bytes | addr).
    pub fn key_for(&self, client: &ClientKey, addr: Ipv4Addr) -> [u8; 16] {
        let kind = [client.kind() as u8, u8::from(client.is_hashed())];
        hmac_md5(
            &self.secret,
            &[
                b"xdhcpd-forcerenew-1",
                &kind,
                client.as_bytes(),
                &addr.octets(),
            ],
        )
    }
}

/// The option 90 value that hands `key` to the client in an ACK (RFC 6704 §3.3.1:
/// protocol 3, algorithm 1, RDM 0, replay counter, type 1, the key).
pub fn key_option(key: &[u8; 16], replay: u64) -> [u8; KEY_OPTION_LEN] {
    let mut v = [0u8; KEY_OPTION_LEN];
    v[0] = AUTH_PROTO_RECONFIGURE_KEY;
    v[1] = AUTH_ALG_HMAC_MD5;
    v[2] = 0;
    v[3..11].copy_from_slice(&replay.to_be_bytes());
    v[11] = RECONF_KEY_VALUE;
    v[12..28].copy_from_slice(key);
    v
}

/// How a FORCERENEW is authenticated.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// No authentication option (only with `allow-unauthenticated`).
    None,
    /// RFC 3118 §4: the configured token, in the clear.
    Token(&'a [u8]),
    /// RFC 6704: HMAC-MD5 under the client's reconfigure key.
    Nonce([u8; 16]),
}

/// What a FORCERENEW carries.
#[derive(Clone, Copy, Debug)]
pub struct ForceRenew<'a> {
    /// Option 54 and the source address.
    pub server_id: Ipv4Addr,
    /// The client's bound address (ciaddr).
    pub client: Ipv4Addr,
    /// htype, hlen, chaddr of the binding.
    pub htype: u8,
    /// Hardware address length (clamped to 16).
    pub hlen: u8,
    /// The binding's hardware address field.
    pub chaddr: [u8; 16],
    /// Transaction id (the one of the client's last exchange: dhcpcd checks it).
    pub xid: u32,
    /// The relay the binding came through (0.0.0.0: direct).
    pub giaddr: Ipv4Addr,
    /// Option 82 stored with the binding (sent back through the relay; empty: none).
    pub relay_info: &'a [u8],
    /// RFC 3118 replay detection value (RDM 0: strictly increasing per client).
    pub replay: u64,
    /// Authentication.
    pub auth: Auth<'a>,
}

/// Smallest BOOTP message (RFC 1542 §2.1).
const MIN_LEN: usize = 300;

/// Writes a DHCPFORCERENEW (RFC 3203) into `out`; returns its length.
pub fn write_forcerenew(out: &mut [u8], fr: &ForceRenew<'_>) -> Result<usize, NoRoom> {
    let token_len = match fr.auth {
        Auth::Token(t) => 3 + 8 + t.len() + 2,
        Auth::Nonce(_) => KEY_OPTION_LEN + 2,
        Auth::None => 0,
    };
    let ri = if fr.relay_info.is_empty() || fr.relay_info.len() > 255 {
        0
    } else {
        fr.relay_info.len() + 2
    };
    let need = 240 + 3 + 6 + ri + token_len + 1;
    if out.len() < need.max(MIN_LEN) || token_len > 257 {
        return Err(NoRoom(out.len()));
    }
    out[..240].fill(0);
    out[0] = OP_BOOTREPLY;
    out[1] = fr.htype;
    out[2] = fr.hlen.min(16);
    out[4..8].copy_from_slice(&fr.xid.to_be_bytes());
    out[12..16].copy_from_slice(&fr.client.octets());
    out[24..28].copy_from_slice(&fr.giaddr.octets());
    out[28..44].copy_from_slice(&fr.chaddr);
    out[236..240].copy_from_slice(&MAGIC_COOKIE);
    let mut n = 240;
    let mut put = |out: &mut [u8], code: u8, val: &[u8]| {
        out[n] = code;
        out[n + 1] = val.len() as u8;
        out[n + 2..n + 2 + val.len()].copy_from_slice(val);
        n += 2 + val.len();
    };
    put(out, opt::MESSAGE_TYPE, &[MessageType::ForceRenew as u8]);
    put(out, opt::SERVER_ID, &fr.server_id.octets());
    if ri != 0 {
        put(out, opt::RELAY_AGENT_INFO, fr.relay_info);
    }
    let mut mac_at = None;
    match fr.auth {
        Auth::None => {}
        Auth::Token(t) => {
            let mut v = [0u8; 255];
            v[0] = AUTH_PROTO_TOKEN;
            v[3..11].copy_from_slice(&fr.replay.to_be_bytes());
            v[11..11 + t.len()].copy_from_slice(t);
            put(out, opt::AUTHENTICATION, &v[..11 + t.len()]);
        }
        Auth::Nonce(_) => {
            let mut v = [0u8; KEY_OPTION_LEN];
            v[0] = AUTH_PROTO_RECONFIGURE_KEY;
            v[1] = AUTH_ALG_HMAC_MD5;
            v[3..11].copy_from_slice(&fr.replay.to_be_bytes());
            v[11] = RECONF_KEY_HMAC;
            // The digest (zero for now) is the option's last 16 bytes.
            put(out, opt::AUTHENTICATION, &v);
            mac_at = Some(n - 16);
        }
    }
    out[n] = opt::END;
    n += 1;
    if n < MIN_LEN {
        out[n..MIN_LEN].fill(0);
        n = MIN_LEN;
    }
    if let (Some(at), Auth::Nonce(key)) = (mac_at, fr.auth) {
        let mac = message_hmac(&key, &out[..n], at);
        out[at..at + 16].copy_from_slice(&mac);
    }
    Ok(n)
}

/// HMAC-MD5 of a whole DHCP message with the 16-byte MAC at `mac_at` as zero, hops and
/// giaddr as zero (RFC 3118 §2, as clients verify it).
fn message_hmac(key: &[u8; 16], msg: &[u8], mac_at: usize) -> [u8; 16] {
    let zero16 = [0u8; 16];
    let zero4 = [0u8; 4];
    hmac_md5(
        key,
        &[
            &msg[..3],
            &[0],
            &msg[4..24],
            &zero4,
            &msg[28..mac_at],
            &zero16,
            &msg[mac_at + 16..],
        ],
    )
}

/// Checks a FORCERENEW's RFC 6704 signature under `key` the way a client does (the test
/// client and the namespace tests use it). False for anything malformed.
pub fn verify_forcerenew(msg: &[u8], key: &[u8; 16]) -> bool {
    let Ok(m) = crate::wire::Message::new_checked(msg) else {
        return false;
    };
    for item in m.options() {
        let Ok((code, val, offset)) = item else {
            return false;
        };
        if code == opt::AUTHENTICATION {
            if val.len() != KEY_OPTION_LEN
                || val[0] != AUTH_PROTO_RECONFIGURE_KEY
                || val[1] != AUTH_ALG_HMAC_MD5
                || val[11] != RECONF_KEY_HMAC
            {
                return false;
            }
            let at = offset + 2 + 12;
            let want = message_hmac(key, msg, at);
            return want
                .iter()
                .zip(&val[12..])
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        }
    }
    false
}

/// Where the book keeps its per-slot words.
enum Words {
    /// In memory (tests, and a daemon whose side file could not be opened).
    Mem(Box<[AtomicU32]>),
    /// The side file beside the lease table (`<lease file>.reconf`), kept across restarts.
    File(lease_store::SlotWords),
}

/// Per-slot facts of the binding's last ACK that the record has no room for: its xid (word
/// 0) and its relay, giaddr (word 1). Written by the workers (one relaxed store each), read
/// by the driver. With [`ReconfBook::open`] they live in a mapped side file beside the
/// lease table, so a campaign started after a restart (or a crash) still sends each
/// FORCERENEW with the xid the client expects and through its relay.
///
/// Also the count of records flagged reconfiguring, kept exact by the lease table's change
/// hook ([`ReconfBook::attach`]) whoever writes the flag: the campaign, the engine's NAK, a
/// failover partner's binding update. While it is 0 the engines skip the per-message lookup.
pub struct ReconfBook {
    words: Words,
    flagged: AtomicU64,
    attached: std::sync::atomic::AtomicBool,
}

const WORD_XID: u32 = 0;
const WORD_GIADDR: u32 = 1;

impl ReconfBook {
    /// An in-memory book for a table of `len` records.
    pub fn new(len: u32) -> Self {
        ReconfBook {
            words: Words::Mem((0..len as usize * 2).map(|_| AtomicU32::new(0)).collect()),
            flagged: AtomicU64::new(0),
            attached: Default::default(),
        }
    }

    /// A book kept in the side file `path` for a table of `len` records (created, kept,
    /// or reset when its shape does not match the table's).
    pub fn open(
        path: &std::path::Path,
        len: u32,
    ) -> std::io::Result<(Self, lease_store::SlotWordsOpen)> {
        let (w, how) = lease_store::SlotWords::open(path, len, 2)?;
        Ok((
            ReconfBook {
                words: Words::File(w),
                flagged: AtomicU64::new(0),
                attached: Default::default(),
            },
            how,
        ))
    }

    /// Counts `table`'s flagged records and keeps the count through the table's change hook
    /// (once per book; later calls, e.g. from a reload's new engine, do nothing).
    pub fn attach(self: &std::sync::Arc<Self>, table: &LeaseTable) {
        if self.attached.swap(true, Relaxed) {
            return;
        }
        if !table.set_change_hook(self.clone()) {
            // No hook slot left: count high forever (the engines always look up).
            self.flagged.store(u64::MAX / 2, Relaxed);
            return;
        }
        let n = table
            .iter()
            .filter(|(_, l)| l.flags & FLAG_RECONFIGURING != 0)
            .count();
        self.flagged.fetch_add(n as u64, Relaxed);
    }

    /// Whether any record may be flagged reconfiguring (one relaxed load).
    #[inline]
    pub fn any_flagged(&self) -> bool {
        self.flagged.load(Relaxed) != 0
    }

    /// Records flagged reconfiguring (exact once attached).
    pub fn flagged(&self) -> u64 {
        self.flagged.load(Relaxed)
    }

    #[inline]
    fn store(&self, slot: u32, word: u32, v: u32) {
        match &self.words {
            Words::Mem(m) => {
                if let Some(c) = m.get(slot as usize * 2 + word as usize) {
                    c.store(v, Relaxed);
                }
            }
            Words::File(f) => f.store(slot, word, v),
        }
    }

    #[inline]
    fn load(&self, slot: u32, word: u32) -> u32 {
        match &self.words {
            Words::Mem(m) => m
                .get(slot as usize * 2 + word as usize)
                .map_or(0, |c| c.load(Relaxed)),
            Words::File(f) => f.load(slot, word),
        }
    }

    /// Notes the ACK of `slot`'s binding.
    #[inline]
    pub fn note(&self, slot: Slot, xid: u32, giaddr: Ipv4Addr) {
        let i = slot.index();
        self.store(i, WORD_XID, xid);
        self.store(i, WORD_GIADDR, u32::from(giaddr));
    }

    /// The xid and relay of `slot`'s last ACK (0 and 0.0.0.0 when none known).
    pub fn get(&self, slot: Slot) -> (u32, Ipv4Addr) {
        let i = slot.index();
        (
            self.load(i, WORD_XID),
            Ipv4Addr::from(self.load(i, WORD_GIADDR)),
        )
    }

    /// Writes a file-backed book back (shutdown); nothing for an in-memory one.
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.words {
            Words::Mem(_) => Ok(()),
            Words::File(f) => f.flush(),
        }
    }
}

impl lease_store::ChangeHook for ReconfBook {
    #[inline]
    fn record_changed(&self, _pool: u32, old: &Lease, new: &Lease) {
        let was = old.flags & FLAG_RECONFIGURING != 0;
        let is = new.flags & FLAG_RECONFIGURING != 0;
        if was != is {
            if is {
                self.flagged.fetch_add(1, Relaxed);
            } else {
                let _ = self
                    .flagged
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
            }
        }
    }
}

/// Why a class cannot select bindings for reconfiguration: it tests what a binding does
/// not keep (option 60 vendor class, option 77 user class; both are only in the client's
/// messages). `None`: selectable.
pub fn class_unselectable(class: &xdhcpd_config::Class) -> Option<String> {
    let m = &class.matches;
    (!m.vendor_class.is_empty() || !m.user_class.is_empty()).then(|| {
        format!(
            "class {:?} tests vendor-class / user-class (options 60 / 77), which a binding \
             does not keep: select its clients by pool, subnet, MAC or client id",
            class.name
        )
    })
}

/// Whether the bound client of `l` is a member of `class`, judged from what the binding
/// keeps: its hardware address, its client identifier (unless stored hashed), the option
/// 82 stored with it (`relay_agent_info`, read with the record: circuit, remote, subscriber id), `giaddr` (the relay of its last
/// ACK, [`ReconfBook`]; 0.0.0.0 when none since the start) and `reg`, its registration
/// as the engine sees it (`None`: unknown; `Some(group)`: KNOWN, with the class its group
/// names). The same rule as a message's class evaluation (`classes::matches`), on those
/// facts.
pub fn binding_in_class(
    class: &xdhcpd_config::Class,
    l: &Lease,
    relay_agent_info: &[u8],
    giaddr: Ipv4Addr,
    reg: Option<Option<xdhcpd_config::ClassId>>,
) -> bool {
    use super::classes::{matches, ClientFacts};
    let hw = (l.htype == 1 && l.hlen == 6).then(|| l.hw());
    let client_id = (l.client.kind() == lease_store::KeyKind::ClientId && !l.client.is_hashed())
        .then(|| l.client.as_bytes());
    let mut f = ClientFacts {
        known: reg.is_some(),
        group: reg.flatten(),
        hw,
        giaddr,
        client_id,
        ..ClientFacts::default()
    };
    for (code, v) in crate::wire::SubOptionIter::new(relay_agent_info).map_while(Result::ok) {
        match code {
            crate::wire::relay_sub::CIRCUIT_ID => f.circuit_id = Some(v),
            crate::wire::relay_sub::REMOTE_ID => f.remote_id = Some(v),
            crate::wire::relay_sub::SUBSCRIBER_ID => f.subscriber_id = Some(v),
            _ => {}
        }
    }
    f.group == Some(class.id) || matches(&class.matches, &f)
}

/// Whether the record is a binding being reconfigured.
#[inline]
pub fn is_reconfiguring(l: &Lease) -> bool {
    l.flags & FLAG_RECONFIGURING != 0 && l.state == LeaseState::Active
}

/// Deletes a reconfiguring binding (the spec's "delete"): RELEASED as for a RELEASE (the
/// partner learns it from the binding update), the flag cleared. False if `l` is no
/// reconfiguring binding.
pub fn delete_binding(l: &mut Lease, now: u32) -> bool {
    if !is_reconfiguring(l) {
        return false;
    }
    let key = l.client;
    l.flags &= !(FLAG_RECONFIGURING | FLAG_RECONF_KEY);
    xdhcpd_failover::store::release(l, &key, now)
}

/// Why a trigger did not start a reconfiguration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStarted {
    /// Already reconfiguring: a second trigger is ignored.
    AlreadyReconfiguring,
    /// Not a bound (Active, unexpired) binding.
    NotBound,
    /// Neither a reconfigure key nor a token, and unauthenticated FORCERENEW not allowed.
    NoAuthentication,
}

/// Marks `slot`'s binding reconfiguring (under the record lock) and returns it.
pub fn begin(
    table: &LeaseTable,
    slot: Slot,
    now: u32,
    policy: &ReconfigureConfig,
) -> Result<Lease, NotStarted> {
    table.update(slot, |l| {
        // A BOOTP client (permanent binding) speaks no DHCP: no FORCERENEW for it.
        if l.state != LeaseState::Active || l.expiry <= now || l.is_permanent() {
            return Err(NotStarted::NotBound);
        }
        if l.flags & FLAG_RECONFIGURING != 0 {
            return Err(NotStarted::AlreadyReconfiguring);
        }
        let keyed = l.flags & FLAG_RECONF_KEY != 0 && policy.nonce;
        if !keyed && policy.token.is_empty() && !policy.allow_unauthenticated {
            return Err(NotStarted::NoAuthentication);
        }
        // Sets the flag and makes the record one the failover partner lacks.
        xdhcpd_failover::store::set_reconfiguring(l, true);
        Ok(*l)
    })
}

/// How an abort ended for the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortOutcome {
    /// Back to bound, unchanged (flag cleared).
    Restored,
    /// `clear-on-abort`: the binding was deleted.
    Deleted,
    /// `deferred-nak`: still flagged; its next REQUEST gets NAK.
    Deferred,
    /// The binding had already ended (nothing to do).
    Gone,
}

/// Applies the abort rule to `slot`'s binding.
pub fn abort(table: &LeaseTable, slot: Slot, now: u32, policy: &ReconfigureConfig) -> AbortOutcome {
    table.update(slot, |l| {
        if !is_reconfiguring(l) {
            return AbortOutcome::Gone;
        }
        if policy.deferred_nak {
            AbortOutcome::Deferred
        } else if policy.clear_on_abort {
            delete_binding(l, now);
            AbortOutcome::Deleted
        } else {
            xdhcpd_failover::store::set_reconfiguring(l, false);
            AbortOutcome::Restored
        }
    })
}

/// The retry schedule: `attempts` sends, the first at once, the first retry
/// `first_retry_ms` later, each interval `backoff` times the one before; the attempt is
/// exhausted one interval after the last send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Sends so far.
    pub sent: u32,
    /// When the next step is due (ms).
    pub due_ms: u64,
    interval_ms: u64,
    retries: u32,
    backoff: u32,
}

/// What a retry schedule wants now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send attempt number `n` (1-based) now.
    Send(u32),
    /// Nothing before `due_ms`.
    Wait,
    /// All attempts sent and the last one's interval passed.
    Exhausted,
}

impl Retry {
    /// A schedule under `policy` whose first send is due at `now_ms`.
    pub fn new(now_ms: u64, policy: &ReconfigureConfig) -> Self {
        Self::with_schedule(
            now_ms,
            policy.retries,
            policy.first_retry_ms,
            policy.backoff,
        )
    }

    /// A schedule of `retries` sends, the first retry `first_retry_ms` after the first send.
    pub fn with_schedule(now_ms: u64, retries: u32, first_retry_ms: u32, backoff: u32) -> Self {
        Retry {
            sent: 0,
            due_ms: now_ms,
            interval_ms: u64::from(first_retry_ms),
            retries,
            backoff: backoff.max(1),
        }
    }

    /// The step due at `now_ms` (a Send advances the schedule).
    pub fn poll(&mut self, now_ms: u64) -> Step {
        if now_ms < self.due_ms {
            return Step::Wait;
        }
        if self.sent >= self.retries {
            return Step::Exhausted;
        }
        self.sent += 1;
        if self.sent > 1 {
            self.interval_ms = self.interval_ms.saturating_mul(u64::from(self.backoff));
        }
        self.due_ms = now_ms.saturating_add(self.interval_ms);
        Step::Send(self.sent)
    }
}

/// The campaign's counters (read by `/metrics` and the API).
#[derive(Debug, Default)]
pub struct ReconfStats {
    /// Triggers accepted into the queue.
    pub triggered: AtomicU64,
    /// FORCERENEWs sent (first attempts and retries).
    pub sent: AtomicU64,
    /// FORCERENEWs that were retries.
    pub retried: AtomicU64,
    /// Bindings that ended while reconfiguring (the client came back: NAK and delete, or
    /// RELEASE / DECLINE / expiry).
    pub succeeded: AtomicU64,
    /// Attempts that ran out of retries.
    pub aborted: AtomicU64,
    /// Triggers refused: no reconfigure key, no token, unauthenticated not allowed.
    pub refused_no_auth: AtomicU64,
    /// Triggers ignored: already reconfiguring.
    pub ignored: AtomicU64,
    /// Triggers for addresses without a bound binding.
    pub not_bound: AtomicU64,
    /// FORCERENEWs that could not be sent (socket error, no xid known yet).
    pub send_failed: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// What the campaign asks its driver to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Send attempt `attempt` of a FORCERENEW for the binding `lease` in `slot`.
    Send {
        /// The record.
        slot: Slot,
        /// The binding as it was when the attempt was due.
        lease: Lease,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// The binding ended while reconfiguring.
    Succeeded(Slot),
    /// Retries ran out; what happened to the binding.
    Aborted(Slot, AbortOutcome),
    /// A trigger did not start, and why.
    NotStarted(Slot, NotStarted),
}

/// The reconfiguration campaign: queued triggers, admitted at `rate` per second, each
/// binding on its retry schedule until it ends or aborts. Sans-IO: the driver calls
/// [`Reconfigurer::poll`] with the clock and carries out the returned actions.
pub struct Reconfigurer {
    policy: ReconfigureConfig,
    queue: VecDeque<Slot>,
    queued: HashMap<Slot, ()>,
    active: HashMap<Slot, Retry>,
    /// Admission allowance (clients), refilled at `rate` per second up to one second's worth.
    allowance: f64,
    last_ms: Option<u64>,
    /// Counters.
    pub stats: std::sync::Arc<ReconfStats>,
    /// Records this campaign changed (flag set, restored, deleted) since the last
    /// [`Reconfigurer::take_changed`]: the driver hands them to the same listeners as the
    /// workers' changes (committer, failover binding updates, event log).
    changed: Vec<Slot>,
    /// Per-pool schedules of subnets that override `[reconfigure]` (pool id -> override).
    overrides: HashMap<u32, xdhcpd_config::ReconfigureOverride>,
}

impl Reconfigurer {
    /// A campaign under `policy`.
    pub fn new(policy: ReconfigureConfig) -> Self {
        Reconfigurer {
            policy,
            queue: VecDeque::new(),
            queued: HashMap::new(),
            active: HashMap::new(),
            allowance: 1.0,
            last_ms: None,
            stats: Default::default(),
            changed: Vec::new(),
            overrides: HashMap::new(),
        }
    }

    /// The subnets' schedule overrides, by pool id (from the configuration in force; a
    /// binding keeps the schedule it started with).
    pub fn set_overrides(&mut self, overrides: HashMap<u32, xdhcpd_config::ReconfigureOverride>) {
        self.overrides = overrides;
    }

    /// The overrides of `config`'s subnets, by pool id (for [`Reconfigurer::set_overrides`]).
    pub fn overrides_of(
        config: &xdhcpd_config::Config,
    ) -> HashMap<u32, xdhcpd_config::ReconfigureOverride> {
        let mut m = HashMap::new();
        for s in &config.subnets {
            if s.reconfigure != xdhcpd_config::ReconfigureOverride::default() {
                for p in &s.pools {
                    m.insert(p.id, s.reconfigure);
                }
            }
        }
        m
    }

    /// Moves the records changed since the last call into `out` (the driver then makes the
    /// changes durable and tells the failover partner and the event log).
    pub fn take_changed(&mut self, out: &mut Vec<Slot>) {
        out.append(&mut self.changed);
    }

    /// The policy in force.
    pub fn policy(&self) -> &ReconfigureConfig {
        &self.policy
    }

    /// A reload's new policy (running schedules keep their own intervals).
    pub fn set_policy(&mut self, policy: ReconfigureConfig) {
        self.policy = policy;
    }

    /// Queues `slot`; false if it is already queued or being reconfigured (ignored).
    pub fn trigger(&mut self, slot: Slot) -> bool {
        if self.active.contains_key(&slot) || self.queued.contains_key(&slot) {
            inc(&self.stats.ignored);
            return false;
        }
        inc(&self.stats.triggered);
        self.queued.insert(slot, ());
        self.queue.push_back(slot);
        true
    }

    /// Bindings waiting for admission.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bindings being reconfigured.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Advances to `now_ms` (unix milliseconds): checks running bindings, sends retries,
    /// aborts, admits queued triggers within the rate. Appends what to do to `out`.
    pub fn poll(&mut self, now_ms: u64, table: &LeaseTable, out: &mut Vec<Action>) {
        let now = (now_ms / 1000).min(u64::from(u32::MAX)) as u32;
        let policy = self.policy.clone();
        let stats = self.stats.clone();
        let changed = &mut self.changed;
        self.active.retain(|&slot, retry| {
            let l = table.read(slot);
            if !is_reconfiguring(&l) {
                inc(&stats.succeeded);
                out.push(Action::Succeeded(slot));
                return false;
            }
            match retry.poll(now_ms) {
                Step::Wait => true,
                Step::Send(attempt) => {
                    inc(&stats.sent);
                    if attempt > 1 {
                        inc(&stats.retried);
                    }
                    out.push(Action::Send {
                        slot,
                        lease: l,
                        attempt,
                    });
                    true
                }
                Step::Exhausted => {
                    inc(&stats.aborted);
                    let how = abort(table, slot, now, &policy);
                    if matches!(how, AbortOutcome::Restored | AbortOutcome::Deleted) {
                        changed.push(slot);
                    }
                    out.push(Action::Aborted(slot, how));
                    false
                }
            }
        });
        // Admission at `rate` clients per second.
        if policy.rate > 0 {
            let rate = f64::from(policy.rate);
            let elapsed = self
                .last_ms
                .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
            self.allowance = (self.allowance + elapsed * rate).min(rate.max(1.0));
        }
        self.last_ms = Some(now_ms);
        while let Some(&slot) = self.queue.front() {
            if policy.rate > 0 && self.allowance < 1.0 {
                break;
            }
            self.queue.pop_front();
            self.queued.remove(&slot);
            match begin(table, slot, now, &policy) {
                Ok(_) => {
                    self.changed.push(slot);
                    if policy.rate > 0 {
                        self.allowance -= 1.0;
                    }
                    let (retries, first) = self
                        .overrides
                        .get(&table.pool_of_slot(slot))
                        .map_or((policy.retries, policy.first_retry_ms), |o| {
                            o.apply(&policy)
                        });
                    let mut retry = Retry::with_schedule(now_ms, retries, first, policy.backoff);
                    if let Step::Send(attempt) = retry.poll(now_ms) {
                        inc(&stats.sent);
                        out.push(Action::Send {
                            slot,
                            lease: table.read(slot),
                            attempt,
                        });
                    }
                    self.active.insert(slot, retry);
                }
                Err(why) => {
                    inc(match why {
                        NotStarted::AlreadyReconfiguring => &stats.ignored,
                        NotStarted::NotBound => &stats.not_bound,
                        NotStarted::NoAuthentication => &stats.refused_no_auth,
                    });
                    out.push(Action::NotStarted(slot, why));
                }
            }
        }
    }

    /// A restart stops reconfiguration (spec: "server restart ... reconfiguration stops"):
    /// clears every flag unless `deferred-nak` keeps them (the failover takeover rule,
    /// `xdhcpd_failover::store::stop_reconfiguring`, the same rule the failover driver runs at
    /// a takeover). Each cleared record becomes one the failover partner lacks, so it is sent
    /// when the partner connects. Returns how many were cleared.
    pub fn clear_at_start(table: &LeaseTable, policy: Option<&ReconfigureConfig>) -> usize {
        let keep = policy.is_some_and(|p| p.deferred_nak);
        if keep {
            return 0;
        }
        let mut n = 0;
        for (slot, l) in table.iter() {
            if l.flags & FLAG_RECONFIGURING != 0 {
                let cleared = table.update(slot, |l| {
                    xdhcpd_failover::store::stop_reconfiguring(l, keep)
                });
                n += usize::from(cleared);
            }
        }
        n
    }
}

/// Where a FORCERENEW goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Unicast to the client's bound address, UDP port 68.
    Client(Ipv4Addr),
    /// Through the relay the binding came through (giaddr), UDP port 67.
    Relay(Ipv4Addr),
}

/// Writes the FORCERENEW for binding `lease` into `out`: the xid and relay of its last ACK
/// (`xid`, `giaddr` from [`ReconfBook::get`]), the stored option 82 (`relay_agent_info`)
/// when relayed, the
/// authentication the binding and policy allow (its reconfigure key, else the token, else
/// none). Returns the length and where it goes.
#[allow(clippy::too_many_arguments)]
pub fn build_forcerenew(
    out: &mut [u8],
    lease: &Lease,
    relay_agent_info: &[u8],
    xid: u32,
    giaddr: Ipv4Addr,
    server_id: Ipv4Addr,
    replay: u64,
    keys: &ReconfKeys,
    policy: &ReconfigureConfig,
) -> Result<(usize, Destination), NoRoom> {
    let auth = if lease.flags & FLAG_RECONF_KEY != 0 && policy.nonce {
        Auth::Nonce(keys.key_for(&lease.client, lease.addr))
    } else if !policy.token.is_empty() {
        Auth::Token(&policy.token)
    } else {
        Auth::None
    };
    let relayed = !giaddr.is_unspecified();
    let fr = ForceRenew {
        server_id,
        client: lease.addr,
        htype: lease.htype,
        hlen: lease.hlen,
        chaddr: lease.chaddr,
        xid,
        giaddr,
        relay_info: if relayed { relay_agent_info } else { &[] },
        replay,
        auth,
    };
    let n = write_forcerenew(out, &fr)?;
    let to = if relayed {
        Destination::Relay(giaddr)
    } else {
        Destination::Client(lease.addr)
    };
    Ok((n, to))
}
