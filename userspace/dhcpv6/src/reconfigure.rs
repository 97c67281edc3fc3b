//! Server-initiated reconfiguration, DHCPv6 (RFC 8415 §18.3.11, §20.4), sans-IO.
//!
//! - The per-client reconfigure key ([`Reconf6Keys::key_for`]): derived from the server's
//!   secret and the client's DUID, so it survives restarts without room in the record. The
//!   engine hands it to a client whose Request/Renew/Rebind carried Reconfigure Accept, in
//!   the Reply's Authentication option ([`key_auth`]: protocol 3, algorithm 1 HMAC-MD5,
//!   RDM 0 monotonic replay counter, type 1), and marks the bindings [`FLAG_RECONF_KEY6`].
//! - The Reconfigure message ([`write_reconfigure`]): transaction-id 0, Server and Client
//!   Identifier, Reconfigure Message option (Renew, Rebind or Information-request) and the
//!   Authentication option whose HMAC-MD5 covers the whole Reconfigure with the digest
//!   zeroed (type 2); in a Relay-Reply with the stored link-address, peer-address and
//!   interface-id when the client was relayed ([`route`]). [`verify_reconfigure`] checks one
//!   as a client does.
//! - The binding's `reconfiguring` state: [`FLAG_RECONFIGURING6`] on the client's records
//!   (the spec's event table is applied by the engine: Solicit dropped and the binding
//!   deleted; Request/Renew/Rebind answered with lifetimes 0 and the binding deleted;
//!   Release/Decline/expiry end it).
//! - The retry schedule ([`Retry6`]: REC_TIMEOUT 2 s doubling, REC_MAX_RC 8 sends) and the
//!   campaign ([`Reconfigurer6`]): triggers per client, admission rate, retries, abort
//!   (restore, `clear-on-abort`, `deferred-nak`), counters. Driven by a clock value.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use lease_store::v6::{
    Binding6, BindingState, BindingTable6, Bytes, DUID_MAX, FLAG_RECONFIGURING6, FLAG_RECONF_KEY6,
};
use xdhcpd_md5::hmac_md5;

use crate::wire::{msg, opt, Message, Writer};

/// Authentication option protocol 3: reconfigure key (RFC 8415 §20.4).
pub const AUTH_PROTO_RECONFIGURE_KEY: u8 = 3;
/// Algorithm 1: HMAC-MD5.
pub const AUTH_ALG_HMAC_MD5: u8 = 1;
/// Replay detection method 0: a monotonically increasing counter.
pub const AUTH_RDM_MONOTONIC: u8 = 0;
/// Reconfigure key type 1: the key value (in a Reply).
pub const KEY_TYPE_VALUE: u8 = 1;
/// Reconfigure key type 2: the HMAC-MD5 digest (in a Reconfigure).
pub const KEY_TYPE_HMAC: u8 = 2;
/// Length of the Authentication option body with a reconfigure key or digest.
pub const AUTH_LEN: usize = 3 + 8 + 1 + 16;
/// RFC 8415 §7.6 REC_TIMEOUT: the first retransmission after 2 s.
pub const REC_TIMEOUT_MS: u32 = 2000;
/// RFC 8415 §7.6 REC_MAX_RC: at most 8 transmissions.
pub const REC_MAX_RC: u32 = 8;

/// The server's key derivation: one secret, a 16-byte key per client (DUID).
#[derive(Clone)]
pub struct Reconf6Keys {
    secret: Vec<u8>,
}

impl Reconf6Keys {
    /// Keys derived from `secret` (16-64 bytes, kept by the daemon beside the lease file).
    pub fn new(secret: &[u8]) -> Self {
        Reconf6Keys {
            secret: secret.to_vec(),
        }
    }

    /// The client's reconfigure key: HMAC-MD5(secret, "xdhcpd-reconfigure6-1" | DUID).
    pub fn key_for(&self, duid: &[u8]) -> [u8; 16] {
        hmac_md5(&self.secret, &[b"xdhcpd-reconfigure6-1", duid])
    }
}

/// The reconfigure side the engine and the campaign share: the keys and a hint of how
/// many clients may have flagged bindings (never below the truth; while it is 0 the engine
/// skips the per-message lookup).
pub struct Reconf6Shared {
    /// Key derivation.
    pub keys: Reconf6Keys,
    flagged: AtomicU64,
}

impl Reconf6Shared {
    /// Shared state over `keys`.
    pub fn new(keys: Reconf6Keys) -> Self {
        Reconf6Shared {
            keys,
            flagged: AtomicU64::new(0),
        }
    }
    /// Whether any binding may be flagged reconfiguring (one relaxed load).
    #[inline]
    pub fn any_flagged(&self) -> bool {
        self.flagged.load(Relaxed) != 0
    }
    /// Notes `n` more flagged clients (a trigger started, or flags kept at a restart).
    pub fn flagged_add(&self, n: u64) {
        self.flagged.fetch_add(n, Relaxed);
    }
    /// Notes one flagged client fewer (never below zero).
    pub fn flagged_sub(&self) {
        let _ = self
            .flagged
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }
}

/// The Authentication option body that hands `key` to the client in a Reply (RFC 8415
/// §20.4.1: protocol 3, algorithm 1, RDM 0, replay counter, type 1, the key).
pub fn key_auth(key: &[u8; 16], replay: u64) -> [u8; AUTH_LEN] {
    let mut v = [0u8; AUTH_LEN];
    v[0] = AUTH_PROTO_RECONFIGURE_KEY;
    v[1] = AUTH_ALG_HMAC_MD5;
    v[2] = AUTH_RDM_MONOTONIC;
    v[3..11].copy_from_slice(&replay.to_be_bytes());
    v[11] = KEY_TYPE_VALUE;
    v[12..28].copy_from_slice(key);
    v
}

/// The way a Reconfigure goes to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route6 {
    /// Straight to the client's address, UDP port 546 (a link-local address needs the
    /// receiving interface as its scope).
    Direct(Ipv6Addr),
    /// In a Relay-Reply to the relay that last forwarded the client's message, UDP port 547.
    Relay {
        /// The relay's address (source of its Relay-Forward).
        relay: Ipv6Addr,
        /// Link-address of its Relay-Forward.
        link: [u8; 16],
        /// Peer-address of its Relay-Forward (the client).
        peer: [u8; 16],
    },
}

impl Route6 {
    /// Destination address and UDP port.
    pub fn dest(&self) -> (Ipv6Addr, u16) {
        match *self {
            Route6::Direct(a) => (a, 546),
            Route6::Relay { relay, .. } => (relay, 547),
        }
    }
}

/// Why a binding has no way for a Reconfigure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// Came through nested relays (only the relay nearest the client is stored).
    NestedRelays,
    /// Neither the sender's address nor a bound address is known (a delegated prefix from
    /// before the way was recorded).
    Unknown,
}

/// Where a Reconfigure for binding `b` goes (RFC 8415 §18.3.11): through the relay that
/// last forwarded the client's message, else to the address it sent from, else to its
/// bound IA_NA address.
pub fn route(b: &Binding6) -> Result<Route6, NoRoute> {
    let v = &b.via;
    match v.hops {
        0 if v.src != [0; 16] => Ok(Route6::Direct(Ipv6Addr::from(v.src))),
        0 if b.kind == lease_store::v6::IaKind::Na => Ok(Route6::Direct(b.ip())),
        0 => Err(NoRoute::Unknown),
        1 => Ok(Route6::Relay {
            relay: Ipv6Addr::from(v.src),
            link: v.link,
            peer: v.peer,
        }),
        _ => Err(NoRoute::NestedRelays),
    }
}

/// What a Reconfigure carries.
#[derive(Clone, Copy, Debug)]
pub struct Reconfigure6<'a> {
    /// Our DUID (Server Identifier).
    pub server_duid: &'a [u8],
    /// The client's DUID (Client Identifier).
    pub client_duid: &'a [u8],
    /// The message the client is asked to send: Renew, Rebind or Information-request.
    pub msg_type: u8,
    /// RDM 0 replay detection value (strictly increasing per client).
    pub replay: u64,
    /// The client's reconfigure key.
    pub key: [u8; 16],
    /// When relayed: the Relay-Reply's link-address, peer-address and interface-id.
    pub relay: Option<([u8; 16], [u8; 16], &'a [u8])>,
}

/// Writes a Reconfigure (RFC 8415 §18.3.11), in a Relay-Reply when `r.relay` is set, into
/// `out`; returns its length, or None when it did not fit.
pub fn write_reconfigure(out: &mut [u8], r: &Reconfigure6<'_>) -> Option<usize> {
    let mut w = Writer::new(out);
    if let Some((link, peer, ifid)) = r.relay {
        w.relay_header(msg::RELAY_REPL, 0, &link, &peer);
        if !ifid.is_empty() {
            w.option(opt::INTERFACE_ID, ifid);
        }
        w.open(opt::RELAY_MSG);
    }
    let start = w.len();
    w.header(msg::RECONFIGURE, [0; 3]);
    w.option(opt::SERVERID, r.server_duid);
    w.option(opt::CLIENTID, r.client_duid);
    w.option(opt::RECONF_MSG, &[r.msg_type]);
    let mut auth = [0u8; AUTH_LEN];
    auth[0] = AUTH_PROTO_RECONFIGURE_KEY;
    auth[1] = AUTH_ALG_HMAC_MD5;
    auth[2] = AUTH_RDM_MONOTONIC;
    auth[3..11].copy_from_slice(&r.replay.to_be_bytes());
    auth[11] = KEY_TYPE_HMAC;
    // The digest (zero while it is computed) is the option's last 16 bytes.
    w.option(opt::AUTH, &auth);
    let end = w.len();
    if r.relay.is_some() {
        w.close();
    }
    let n = w.finish()?;
    let mac = hmac_md5(&r.key, &[&out[start..end]]);
    out[end - 16..end].copy_from_slice(&mac);
    Some(n)
}

/// What a client learns from a Reconfigure it verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The message it is asked to send.
    pub msg_type: u8,
    /// The replay detection value.
    pub replay: u64,
}

/// Checks a Reconfigure (the client/server message, not a Relay-Reply) under `key` as a
/// client does (RFC 8415 §20.4.2). Errors name what was wrong.
pub fn verify_reconfigure(m: &[u8], key: &[u8; 16]) -> Result<Verified, &'static str> {
    let msg = Message::parse(m, 0).map_err(|e| e.what)?;
    if msg.msg_type != msg::RECONFIGURE {
        return Err("not a Reconfigure");
    }
    let mut mtype = None;
    let mut auth = None;
    for o in msg.options {
        let (code, b, at) = o.map_err(|e| e.what)?;
        match code {
            opt::RECONF_MSG if b.len() == 1 => mtype = Some(b[0]),
            opt::AUTH if auth.is_none() => auth = Some((b, at)),
            _ => {}
        }
    }
    let msg_type = mtype.ok_or("no Reconfigure Message option")?;
    let (a, at) = auth.ok_or("no Authentication option")?;
    if a.len() != AUTH_LEN
        || a[0] != AUTH_PROTO_RECONFIGURE_KEY
        || a[1] != AUTH_ALG_HMAC_MD5
        || a[2] != AUTH_RDM_MONOTONIC
        || a[11] != KEY_TYPE_HMAC
    {
        return Err("not a reconfigure-key HMAC-MD5 Authentication option");
    }
    let mac_at = at + 12;
    let want = hmac_md5(key, &[&m[..mac_at], &[0u8; 16], &m[mac_at + 16..]]);
    let diff = want
        .iter()
        .zip(&m[mac_at..mac_at + 16])
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff != 0 {
        return Err("HMAC-MD5 digest does not match the key");
    }
    let mut r = [0u8; 8];
    r.copy_from_slice(&a[3..11]);
    Ok(Verified {
        msg_type,
        replay: u64::from_be_bytes(r),
    })
}

/// Whether the record is a binding being reconfigured.
#[inline]
pub fn is_reconfiguring(b: &Binding6) -> bool {
    b.flags & FLAG_RECONFIGURING6 != 0 && b.state == BindingState::Active
}

/// Deletes a binding (the spec's "delete"): Released now, the reconfigure flags cleared.
pub fn delete_binding(b: &mut Binding6, now: u32) {
    b.flags &= !(FLAG_RECONFIGURING6 | FLAG_RECONF_KEY6);
    b.state = BindingState::Released;
    b.state_start = now;
    b.cltt = now;
    b.expiry = b.expiry.min(now);
}

/// Reconfigure policy (the daemon maps `[reconfigure]` onto it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconf6Policy {
    /// Reconfigures sent per client (the first and the retries), at least 1.
    pub retries: u32,
    /// Milliseconds from the first send to the first retry.
    pub first_retry_ms: u32,
    /// Factor from one retry interval to the next.
    pub backoff: u32,
    /// Clients started per second (0 = no limit).
    pub rate: u32,
    /// On abort, delete the bindings (else back to bound, unchanged).
    pub clear_on_abort: bool,
    /// On abort, keep the bindings flagged: the next Renew/Rebind gets lifetimes 0.
    pub deferred_nak: bool,
    /// The message the client is asked to send (Renew, Rebind or Information-request).
    pub msg_type: u8,
}

impl Default for Reconf6Policy {
    fn default() -> Self {
        Reconf6Policy {
            retries: REC_MAX_RC,
            first_retry_ms: REC_TIMEOUT_MS,
            backoff: 2,
            rate: 100,
            clear_on_abort: false,
            deferred_nak: false,
            msg_type: msg::RENEW,
        }
    }
}

/// The retry schedule: `retries` sends, the first at once, the first retry
/// `first_retry_ms` later, each interval `backoff` times the one before; exhausted one
/// interval after the last send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry6 {
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
pub enum Step6 {
    /// Send attempt `n` (1-based) now.
    Send(u32),
    /// Nothing before `due_ms`.
    Wait,
    /// All attempts sent and the last one's interval passed.
    Exhausted,
}

impl Retry6 {
    /// A schedule under `p` whose first send is due at `now_ms`.
    pub fn new(now_ms: u64, p: &Reconf6Policy) -> Self {
        Retry6 {
            sent: 0,
            due_ms: now_ms,
            interval_ms: u64::from(p.first_retry_ms),
            retries: p.retries.max(1),
            backoff: p.backoff.max(1),
        }
    }

    /// The step due at `now_ms` (a Send advances the schedule).
    pub fn poll(&mut self, now_ms: u64) -> Step6 {
        if now_ms < self.due_ms {
            return Step6::Wait;
        }
        if self.sent >= self.retries {
            return Step6::Exhausted;
        }
        self.sent += 1;
        if self.sent > 1 {
            self.interval_ms = self.interval_ms.saturating_mul(u64::from(self.backoff));
        }
        self.due_ms = now_ms.saturating_add(self.interval_ms);
        Step6::Send(self.sent)
    }
}

/// The campaign's counters (read by `/metrics` and the API).
#[derive(Debug, Default)]
pub struct Reconf6Stats {
    /// Triggers accepted into the queue.
    pub triggered: AtomicU64,
    /// Reconfigures sent (first attempts and retries).
    pub sent: AtomicU64,
    /// Reconfigures that were retries.
    pub retried: AtomicU64,
    /// Clients whose bindings ended while reconfiguring (they came back, or released).
    pub succeeded: AtomicU64,
    /// Clients whose retries ran out.
    pub aborted: AtomicU64,
    /// Triggers refused: the client has no reconfigure key (it never sent Reconfigure
    /// Accept); RFC 8415 has no unauthenticated Reconfigure.
    pub refused_no_auth: AtomicU64,
    /// Triggers ignored: already reconfiguring.
    pub ignored: AtomicU64,
    /// Triggers for clients without a bound binding.
    pub not_bound: AtomicU64,
    /// Reconfigures that could not be sent (no way to the client, socket error).
    pub send_failed: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// A client's DUID as the campaign keys it (fixed size, no allocation).
pub type ClientDuid = Bytes<DUID_MAX>;

/// Why a trigger did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStarted6 {
    /// Already reconfiguring: a second trigger is ignored.
    AlreadyReconfiguring,
    /// No active, unexpired binding among the slots.
    NotBound,
    /// No reconfigure key was given to the client.
    NoKey,
}

/// How an abort ended for the client's bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort6 {
    /// Back to bound, unchanged (flag cleared).
    Restored,
    /// `clear-on-abort`: the bindings were deleted.
    Deleted,
    /// `deferred-nak`: still flagged; the next Renew/Rebind gets lifetimes 0.
    Deferred,
    /// The bindings had already ended.
    Gone,
}

/// What the campaign asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action6 {
    /// Send attempt `attempt` of a Reconfigure to the client of `binding`.
    Send {
        /// One of the client's reconfiguring bindings (its DUID, the way to it).
        binding: Box<Binding6>,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// The client's bindings ended while reconfiguring.
    Succeeded(ClientDuid),
    /// Retries ran out; what happened to the bindings.
    Aborted(ClientDuid, Abort6),
    /// A trigger did not start, and why.
    NotStarted(ClientDuid, NotStarted6),
}

struct Running {
    slots: Vec<u32>,
    retry: Retry6,
}

/// The DHCPv6 reconfiguration campaign: triggers per client (its DUID and the slots of
/// its bindings), admitted at `rate` per second, each client on its retry schedule until
/// its bindings end or it aborts. Sans-IO: the driver calls [`Reconfigurer6::poll`] with
/// the clock and the table and carries out the returned actions.
pub struct Reconfigurer6 {
    policy: Reconf6Policy,
    queue: VecDeque<(ClientDuid, Vec<u32>)>,
    queued: HashMap<ClientDuid, ()>,
    active: HashMap<ClientDuid, Running>,
    allowance: f64,
    last_ms: Option<u64>,
    /// Counters.
    pub stats: Arc<Reconf6Stats>,
    shared: Option<Arc<Reconf6Shared>>,
}

impl Reconfigurer6 {
    /// A campaign under `policy`; `shared` (the engine's) is told how many clients are
    /// flagged.
    pub fn new(policy: Reconf6Policy, shared: Option<Arc<Reconf6Shared>>) -> Self {
        Reconfigurer6 {
            policy,
            queue: VecDeque::new(),
            queued: HashMap::new(),
            active: HashMap::new(),
            allowance: 1.0,
            last_ms: None,
            stats: Default::default(),
            shared,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Reconf6Policy {
        &self.policy
    }

    /// A new policy (running schedules keep their own intervals).
    pub fn set_policy(&mut self, p: Reconf6Policy) {
        self.policy = p;
    }

    /// Queues the client `duid` with the slots of its bindings; false when it is already
    /// queued or being reconfigured (ignored).
    pub fn trigger(&mut self, duid: &[u8], slots: Vec<u32>) -> bool {
        let k = ClientDuid::new(duid);
        if self.active.contains_key(&k) || self.queued.contains_key(&k) {
            inc(&self.stats.ignored);
            return false;
        }
        inc(&self.stats.triggered);
        self.queued.insert(k, ());
        self.queue.push_back((k, slots));
        true
    }

    /// Clients waiting for admission.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Clients being reconfigured.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    fn unflag(&self) {
        if let Some(s) = &self.shared {
            s.flagged_sub();
        }
    }

    /// Advances to `now_ms` (unix milliseconds): checks running clients, sends retries,
    /// aborts, admits queued triggers within the rate. Appends what to do to `out`.
    pub fn poll(&mut self, now_ms: u64, table: &mut BindingTable6, out: &mut Vec<Action6>) {
        let now = (now_ms / 1000).min(u64::from(u32::MAX)) as u32;
        let policy = self.policy.clone();
        let mut done: Vec<(ClientDuid, Option<Abort6>)> = Vec::new();
        for (k, run) in self.active.iter_mut() {
            let live = first_reconfiguring(table, k, &run.slots);
            let Some(b) = live else {
                done.push((*k, None));
                continue;
            };
            match run.retry.poll(now_ms) {
                Step6::Wait => {}
                Step6::Send(attempt) => {
                    inc(&self.stats.sent);
                    if attempt > 1 {
                        inc(&self.stats.retried);
                    }
                    out.push(Action6::Send {
                        binding: Box::new(b),
                        attempt,
                    });
                }
                Step6::Exhausted => {
                    let how = abort(table, k, &run.slots, now, &policy);
                    done.push((*k, Some(how)));
                }
            }
        }
        for (k, how) in done {
            self.active.remove(&k);
            match how {
                None => {
                    self.unflag();
                    inc(&self.stats.succeeded);
                    out.push(Action6::Succeeded(k));
                }
                Some(how) => {
                    inc(&self.stats.aborted);
                    if how != Abort6::Deferred {
                        self.unflag();
                    }
                    out.push(Action6::Aborted(k, how));
                }
            }
        }
        if policy.rate > 0 {
            let rate = f64::from(policy.rate);
            let elapsed = self
                .last_ms
                .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
            self.allowance = (self.allowance + elapsed * rate).min(rate.max(1.0));
        }
        self.last_ms = Some(now_ms);
        while !self.queue.is_empty() {
            if policy.rate > 0 && self.allowance < 1.0 {
                break;
            }
            let Some((k, slots)) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&k);
            match begin(table, &k, &slots, now) {
                Ok(()) => {
                    if let Some(s) = &self.shared {
                        s.flagged_add(1);
                    }
                    if policy.rate > 0 {
                        self.allowance -= 1.0;
                    }
                    let mut retry = Retry6::new(now_ms, &policy);
                    if let (Step6::Send(attempt), Some(b)) =
                        (retry.poll(now_ms), first_reconfiguring(table, &k, &slots))
                    {
                        inc(&self.stats.sent);
                        out.push(Action6::Send {
                            binding: Box::new(b),
                            attempt,
                        });
                    }
                    self.active.insert(k, Running { slots, retry });
                }
                Err(why) => {
                    inc(match why {
                        NotStarted6::AlreadyReconfiguring => &self.stats.ignored,
                        NotStarted6::NotBound => &self.stats.not_bound,
                        NotStarted6::NoKey => &self.stats.refused_no_auth,
                    });
                    out.push(Action6::NotStarted(k, why));
                }
            }
        }
    }

    /// A restart stops reconfiguration (spec: "server restart ... reconfiguration stops"):
    /// clears every flag unless `deferred-nak` keeps them. Returns (cleared, kept).
    pub fn clear_at_start(table: &mut BindingTable6, deferred_nak: bool) -> (usize, usize) {
        let flagged: Vec<(u32, Binding6)> = table
            .iter()
            .filter(|(_, b)| b.flags & FLAG_RECONFIGURING6 != 0)
            .collect();
        if deferred_nak {
            return (0, flagged.len());
        }
        let mut n = 0;
        for (s, mut b) in flagged {
            b.flags &= !FLAG_RECONFIGURING6;
            n += usize::from(table.put(Some(s), &b).is_ok());
        }
        (n, 0)
    }
}

fn first_reconfiguring(t: &BindingTable6, k: &ClientDuid, slots: &[u32]) -> Option<Binding6> {
    slots
        .iter()
        .filter_map(|&s| t.get(s))
        .find(|b| b.duid == *k && is_reconfiguring(b))
}

/// Flags the client's active, keyed bindings among `slots` reconfiguring.
fn begin(
    t: &mut BindingTable6,
    k: &ClientDuid,
    slots: &[u32],
    now: u32,
) -> Result<(), NotStarted6> {
    let mine = |b: &Binding6| b.duid == *k && b.state == BindingState::Active && b.expiry > now;
    let bound: Vec<(u32, Binding6)> = slots
        .iter()
        .filter_map(|&s| t.get(s).map(|b| (s, b)))
        .filter(|(_, b)| mine(b))
        .collect();
    if bound.is_empty() {
        return Err(NotStarted6::NotBound);
    }
    if bound
        .iter()
        .any(|(_, b)| b.flags & FLAG_RECONFIGURING6 != 0)
    {
        return Err(NotStarted6::AlreadyReconfiguring);
    }
    if !bound.iter().any(|(_, b)| b.flags & FLAG_RECONF_KEY6 != 0) {
        return Err(NotStarted6::NoKey);
    }
    for (s, mut b) in bound {
        if b.flags & FLAG_RECONF_KEY6 != 0 {
            b.flags |= FLAG_RECONFIGURING6;
            let _ = t.put(Some(s), &b);
        }
    }
    Ok(())
}

/// Applies the abort rule to the client's bindings.
fn abort(
    t: &mut BindingTable6,
    k: &ClientDuid,
    slots: &[u32],
    now: u32,
    p: &Reconf6Policy,
) -> Abort6 {
    let mut how = Abort6::Gone;
    for &s in slots {
        let Some(mut b) = t.get(s) else { continue };
        if b.duid != *k || !is_reconfiguring(&b) {
            continue;
        }
        how = if p.deferred_nak {
            Abort6::Deferred
        } else if p.clear_on_abort {
            delete_binding(&mut b, now);
            let _ = t.put(Some(s), &b);
            Abort6::Deleted
        } else {
            b.flags &= !FLAG_RECONFIGURING6;
            let _ = t.put(Some(s), &b);
            Abort6::Restored
        };
    }
    how
}

/// Why a Reconfigure could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No way to the client.
    NoRoute(NoRoute),
    /// The output buffer is too small.
    NoRoom,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::NoRoute(NoRoute::NestedRelays) => {
                f.write_str("the client came through nested relays (not stored)")
            }
            BuildError::NoRoute(NoRoute::Unknown) => f.write_str("no known address of the client"),
            BuildError::NoRoom => f.write_str("the message did not fit the buffer"),
        }
    }
}

/// Builds the Reconfigure for the client of `b` into `out`: its key, the way its last
/// message came (a Relay-Reply through its relay, with the stored interface-id). Returns
/// the length and the route.
pub fn build_reconfigure(
    out: &mut [u8],
    b: &Binding6,
    server_duid: &[u8],
    keys: &Reconf6Keys,
    replay: u64,
    msg_type: u8,
) -> Result<(usize, Route6), BuildError> {
    let r = route(b).map_err(BuildError::NoRoute)?;
    let relay = match r {
        Route6::Relay { link, peer, .. } => Some((link, peer, b.relay.interface_id.as_slice())),
        Route6::Direct(_) => None,
    };
    let n = write_reconfigure(
        out,
        &Reconfigure6 {
            server_duid,
            client_duid: b.duid.as_slice(),
            msg_type,
            replay,
            key: keys.key_for(b.duid.as_slice()),
            relay,
        },
    )
    .ok_or(BuildError::NoRoom)?;
    Ok((n, r))
}
