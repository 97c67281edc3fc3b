//! DHCPv4 bulk leasequery (RFC 6926) as a sans-IO session: the bytes a TCP
//! connection brings in go to [`Session::feed`]; [`Session::poll`] writes the
//! next framed answer message into the caller's buffer. The driver owns the
//! socket, the clock and the access decision; nothing here does IO.
//!
//! Framing (RFC 6926 §6.1): every message on the stream is a 2-byte
//! big-endian length followed by a DHCP message of that many bytes.
//!
//! Query types (RFC 6926 §6.2.1, RFC 6925 for relay-id), exactly one per query:
//! - by MAC: `htype`/`hlen`/`chaddr` set;
//! - by client identifier: option 61;
//! - by relay-id: sub-option 12 in the query's option 82;
//! - by remote-id: sub-option 2 in the query's option 82;
//! - all configured addresses: none of the above.
//!
//! More than one, a non-zero `ciaddr` (a query by address is RFC 4388's, over
//! UDP), a message that does not parse, a type other than DHCPBULKLEASEQUERY,
//! a bad query-start-time / query-end-time (options 154 / 155, Unix seconds)
//! or a start after the end → DHCPLEASEQUERYDONE with status MalformedQuery.
//!
//! The answer is a stream of DHCPLEASEACTIVE (an unexpired ACTIVE binding)
//! and DHCPLEASEUNASSIGNED messages, each with base-time (152),
//! start-time-of-state (153) and dhcp-state (156), then one
//! DHCPLEASEQUERYDONE (status option 151 only on error). Which records:
//! - a query for all: every address in our pools, ACTIVE or UNASSIGNED;
//! - the other queries: the records of the matching client(s) — ACTIVE ones,
//!   and, when the query has a query-start-time (the requestor catches up on
//!   changes), the matching records that are no longer active as UNASSIGNED.
//!
//! With query-start-time / query-end-time only records whose state began in
//! that window are reported (the time a record's state began: its lease start
//! for OFFERED / ACTIVE, its expiry for EXPIRED, else the later of start and
//! the client's last transaction).
//!
//! Bounded memory: a query answer is a resumable scan of the table (a record
//! cursor); nothing collects answers. At most [`MAX_QUEUED`] queries wait
//! behind the one being answered; while the queue is full [`Session::feed`]
//! takes no more bytes, so the driver stops reading and TCP flow control
//! holds the requestor back. A frame longer than [`MAX_MESSAGE`] or of length
//! 0 cannot be answered (its xid is unread) and ends the connection
//! ([`Fatal`]). One poll reads at most [`SCAN_BUDGET`] records, so a sparse
//! scan never holds the driver's thread for long.
//!
//! # Active leasequery (RFC 7724)
//!
//! A DHCPACTIVELEASEQUERY on the same connection subscribes it to binding changes
//! as they happen. Filters: none (every binding), or a relay-id / remote-id in
//! option 82 (as RFC 6926's); a MAC, client identifier or ciaddr → MalformedQuery.
//! [`Session::poll_with`] first answers [`Poll::Subscribe`]: the driver registers
//! a bounded change queue for the connection (fed by the lease table's change
//! hook: [`Change`], [`reportable`]) and hands it to every later poll as a
//! [`ChangeSource`]. Then:
//! - with query-start-time (option 154): catch-up from the table: every matching
//!   record whose state changed at or after that time ([`changed_since`]), as
//!   DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED, then DHCPLEASEQUERYSTATUS with status
//!   CatchUpComplete. Changes that arrive during the scan for records the scan has
//!   not reached yet are dropped (the scan reads those records later, so it sends
//!   that state or a newer one); changes for records it has passed are kept, in
//!   order, and sent after CatchUpComplete (at most the queue's size; beyond it the
//!   subscriber is cut off as below). The queue is drained before every record the
//!   scan reads, so nothing the scan sent is followed by an older state.
//! - live: every queued change that matches the filter, in the order the records
//!   changed, each with base-time (152) = now.
//! - a subscriber whose queue overflowed (it reads slower than the bindings change)
//!   is cut off: DHCPLEASEQUERYDONE with status DataMissing, then the connection
//!   closes; reconnecting with query-start-time = the last base-time it saw resumes
//!   with nothing missed (the catch-up reads the table).
//! - a query that arrives while subscribed → DHCPLEASEQUERYDONE with status
//!   ConnectionActive for its xid (the subscription goes on); DHCPTLS → DHCPTLS with
//!   status TLSConnectionRefused, the connection goes on as it is.
//! - shutdown ends the subscription with DHCPLEASEQUERYDONE / QueryTerminated.
//!
//! # TLS (RFC 7724: DHCPTLS)
//!
//! The driver says what the server offers ([`Session::set_tls`], [`TlsMode`]):
//! - [`TlsMode::Off`]: every DHCPTLS is answered DHCPTLS / TLSConnectionRefused and the
//!   connection goes on in clear.
//! - [`TlsMode::Offer`] / [`TlsMode::Require`]: a DHCPTLS that is the connection's first
//!   message is answered DHCPTLS without a status option (Success); [`Session::feed`] takes
//!   nothing after that frame (the bytes that follow are the requestor's TLS ClientHello,
//!   not frames), and the poll after the answer returns [`Poll::StartTls`]: the driver runs
//!   the TLS handshake (as server) on the connection, starting with the bytes `feed` left,
//!   and calls [`Session::tls_established`]; the session then goes on inside TLS. A failed
//!   handshake is the driver's to count and close. A DHCPTLS later on the connection (after
//!   another message, or inside TLS) → TLSConnectionRefused, nothing changes.
//! - [`TlsMode::Require`]: a query (bulk or active) on a connection that has not started
//!   TLS → DHCPLEASEQUERYDONE / NotAllowed ("TLS required"), counted `tls_required`, then the
//!   connection closes.
//!
//! The address check (`allowed`) comes first: a requestor not allowed gets NotAllowed for
//! its first message, DHCPTLS included.
//!
//! A message type a leasequery connection does not carry (anything but DHCPBULKLEASEQUERY,
//! DHCPACTIVELEASEQUERY and DHCPTLS) is answered DHCPLEASEQUERYDONE / MalformedQuery and the
//! connection closes (RFC 7724 section 8.1.1).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use lease_store::{ClientKey, KeyKind, Lease, LeaseState, LeaseTable, VarData};

use super::wire::{
    opt, relay_sub, Message, MessageType, ReplyWriter, SubOptionIter, MAGIC_COOKIE, OP_BOOTREQUEST,
};

/// Longest query message accepted (bytes after the length prefix).
pub const MAX_MESSAGE: usize = 1024;
/// Queries that may wait behind the one being answered on one connection.
pub const MAX_QUEUED: usize = 4;
/// Records one [`Session::poll`] reads at most before returning [`Poll::Again`].
pub const SCAN_BUDGET: u32 = 4096;
/// Smallest output buffer [`Session::poll`] accepts: the length prefix and a message.
pub const MIN_OUT: usize = 2 + 1024;

/// RFC 6926 §6.2.2 status codes (option 151), with RFC 7724's DataMissing.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The query was answered completely.
    Success = 0,
    /// A failure no other code describes (here: the answer did not fit the buffer).
    UnspecFail = 1,
    /// The server ended the query before its end (shutdown).
    QueryTerminated = 2,
    /// The query could not be understood.
    MalformedQuery = 3,
    /// The requestor may not ask (not in `leasequery-allow`).
    NotAllowed = 4,
    /// RFC 7724: the server lacks the data asked for (here also: a subscriber that fell
    /// behind is cut off).
    DataMissing = 5,
    /// RFC 7724: the connection already carries an active leasequery.
    ConnectionActive = 6,
    /// RFC 7724: the catch-up phase of an active leasequery is complete.
    CatchUpComplete = 7,
    /// RFC 7724: the server will not start TLS.
    TlsConnectionRefused = 8,
}

impl Status {
    /// The status for an option 151 code byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Success,
            1 => Self::UnspecFail,
            2 => Self::QueryTerminated,
            3 => Self::MalformedQuery,
            4 => Self::NotAllowed,
            5 => Self::DataMissing,
            6 => Self::ConnectionActive,
            7 => Self::CatchUpComplete,
            8 => Self::TlsConnectionRefused,
            _ => return None,
        })
    }
}

/// RFC 6926 §6.2.8 dhcp-state values (option 156).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpState {
    /// Free for allocation.
    Available = 1,
    /// Bound to a client.
    Active = 2,
    /// The lease ran out.
    Expired = 3,
    /// The client gave it back.
    Released = 4,
    /// Declined or abandoned: not handed out.
    Abandoned = 5,
    /// Being offered (no binding yet).
    Transitioning = 8,
}

/// The dhcp-state a record reports at `now`.
pub fn dhcp_state(l: &Lease, now: u32) -> DhcpState {
    match l.state {
        LeaseState::Active if l.expiry > now => DhcpState::Active,
        LeaseState::Active | LeaseState::Expired => DhcpState::Expired,
        LeaseState::Released => DhcpState::Released,
        LeaseState::Declined | LeaseState::Abandoned => DhcpState::Abandoned,
        LeaseState::Offered => DhcpState::Transitioning,
        LeaseState::Free | LeaseState::Backup | LeaseState::Reserved => DhcpState::Available,
    }
}

/// When the record's current state began (Unix seconds); see the module text.
pub fn state_since(l: &Lease) -> u32 {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.start,
        LeaseState::Expired => l.expiry,
        _ => l.start.max(l.cltt),
    }
}

/// When the record last changed in a way a requestor sees (Unix seconds): its lease start
/// or last transaction, or its end once that has passed. The catch-up of an active
/// leasequery reports the records with `changed_since >= query-start-time`.
pub fn changed_since(l: &Lease, now: u32) -> u32 {
    let ended = if l.expiry != 0 && l.expiry <= now {
        l.expiry
    } else {
        0
    };
    l.start.max(l.cltt).max(ended)
}

/// Whether a record change is one an active leasequery reports: the record is or was
/// ACTIVE (bound, renewed, released, expired, taken over). Offers, declines and the
/// freeing of an already unbound address are not binding changes.
pub fn reportable(old: &Lease, new: &Lease) -> bool {
    old.state == LeaseState::Active || new.state == LeaseState::Active
}

/// One record change as the table's change hook saw it (a copy of the record, made
/// under its lock, so a subscriber sees every state in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The record's slot index ([`LeaseTable::slot`]).
    pub slot: u32,
    /// The record after the change.
    pub lease: Lease,
}

/// A subscriber's queue of changes, as the driver keeps it.
pub trait ChangeSource {
    /// The oldest queued change.
    fn next_change(&mut self) -> Option<Change>;
    /// Changes that did not fit the queue since the subscription began (0: none lost).
    fn lost(&self) -> u64;
}

/// A [`ChangeSource`] that never has a change (bulk-only use).
pub struct NoChanges;

impl ChangeSource for NoChanges {
    fn next_change(&mut self) -> Option<Change> {
        None
    }
    fn lost(&self) -> u64 {
        0
    }
}

/// Counters of bulk leasequery, shared by every connection (the driver adds its own).
#[derive(Debug, Default)]
pub struct BulkStats {
    /// Connections accepted from an allowed address.
    pub connections: AtomicU64,
    /// Connections refused: not allowed, over the connection limit.
    pub connections_refused: AtomicU64,
    /// Connections ended for a bad frame, an idle timeout or a write error.
    pub connections_failed: AtomicU64,
    /// Query frames received.
    pub queries: AtomicU64,
    /// DHCPLEASEACTIVE messages sent.
    pub active: AtomicU64,
    /// DHCPLEASEUNASSIGNED messages sent.
    pub unassigned: AtomicU64,
    /// DHCPLEASEQUERYDONE messages sent with status Success.
    pub done: AtomicU64,
    /// Queries answered MalformedQuery.
    pub malformed: AtomicU64,
    /// Queries answered NotAllowed.
    pub not_allowed: AtomicU64,
    /// Queries ended QueryTerminated or UnspecFail.
    pub terminated: AtomicU64,
    /// RFC 7724: active leasequery subscriptions started.
    pub subscriptions: AtomicU64,
    /// Catch-up records sent (DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED before CatchUpComplete).
    pub catchup_sent: AtomicU64,
    /// Catch-up phases completed (DHCPLEASEQUERYSTATUS CatchUpComplete sent).
    pub catchup_complete: AtomicU64,
    /// Live binding changes sent to subscribers.
    pub changes_sent: AtomicU64,
    /// Subscribers cut off because their queue overflowed (they read too slowly).
    pub cut_off: AtomicU64,
    /// Queries refused ConnectionActive (the connection already subscribed).
    pub connection_active: AtomicU64,
    /// DHCPTLS requests answered TLSConnectionRefused.
    pub tls_refused: AtomicU64,
    /// DHCPTLS requests accepted (answered Success; the handshake follows).
    pub tls_accepted: AtomicU64,
    /// TLS handshakes completed (the driver counts them).
    pub tls_established: AtomicU64,
    /// TLS handshakes that failed: a bad or missing client certificate, a requestor that
    /// refused ours, not TLS, a timeout (the driver counts them).
    pub tls_failed: AtomicU64,
    /// Queries refused NotAllowed because TLS is required and the connection is in clear.
    pub tls_required: AtomicU64,
    /// Active leasequery subscribers now (a gauge the driver keeps).
    pub subscribers: AtomicU64,
    /// Binding changes copied into subscribers' queues by the change hook (summed).
    pub changes_queued: AtomicU64,
    /// Binding changes not queued because a subscriber's queue was full (summed).
    pub changes_lost: AtomicU64,
}

impl BulkStats {
    /// Adds one to counter `c` (relaxed).
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> BulkSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BulkSnapshot {
            connections: g(&self.connections),
            connections_refused: g(&self.connections_refused),
            connections_failed: g(&self.connections_failed),
            queries: g(&self.queries),
            active: g(&self.active),
            unassigned: g(&self.unassigned),
            done: g(&self.done),
            malformed: g(&self.malformed),
            not_allowed: g(&self.not_allowed),
            terminated: g(&self.terminated),
            subscriptions: g(&self.subscriptions),
            catchup_sent: g(&self.catchup_sent),
            catchup_complete: g(&self.catchup_complete),
            changes_sent: g(&self.changes_sent),
            cut_off: g(&self.cut_off),
            connection_active: g(&self.connection_active),
            tls_refused: g(&self.tls_refused),
            tls_accepted: g(&self.tls_accepted),
            tls_established: g(&self.tls_established),
            tls_failed: g(&self.tls_failed),
            tls_required: g(&self.tls_required),
            subscribers: g(&self.subscribers),
            changes_queued: g(&self.changes_queued),
            changes_lost: g(&self.changes_lost),
        }
    }
}

/// A copy of [`BulkStats`].
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkSnapshot {
    pub connections: u64,
    pub connections_refused: u64,
    pub connections_failed: u64,
    pub queries: u64,
    pub active: u64,
    pub unassigned: u64,
    pub done: u64,
    pub malformed: u64,
    pub not_allowed: u64,
    pub terminated: u64,
    pub subscriptions: u64,
    pub catchup_sent: u64,
    pub catchup_complete: u64,
    pub changes_sent: u64,
    pub cut_off: u64,
    pub connection_active: u64,
    pub tls_refused: u64,
    pub tls_accepted: u64,
    pub tls_established: u64,
    pub tls_failed: u64,
    pub tls_required: u64,
    pub subscribers: u64,
    pub changes_queued: u64,
    pub changes_lost: u64,
}

/// The stream cannot go on: the connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A frame's length prefix (the value, at stream offset `at`) is 0 or over [`MAX_MESSAGE`].
    #[error("frame length {len} at stream offset {at} is not 1..={max}", max = MAX_MESSAGE)]
    FrameLength {
        /// The length prefix.
        len: usize,
        /// Offset of the prefix in the connection's byte stream.
        at: u64,
    },
}

/// What the server offers on its leasequery connections (RFC 7724 DHCPTLS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS: DHCPTLS is answered TLSConnectionRefused.
    #[default]
    Off,
    /// TLS when the requestor asks for it (DHCPTLS first); queries in clear are answered.
    Offer,
    /// Only inside TLS: a query on a connection that did not start TLS is refused NotAllowed.
    Require,
}

/// Where a connection stands with TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsState {
    /// In clear (no DHCPTLS accepted).
    Clear,
    /// A DHCPTLS was taken as the first frame: input stops, its answer is owed.
    Asked,
    /// The DHCPTLS answer (Success) was written: [`Poll::StartTls`] is owed.
    Answered,
    /// [`Poll::StartTls`] was returned: waiting for [`Session::tls_established`].
    Handshake,
    /// Inside TLS.
    Established,
}

/// What [`Session::poll`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// A framed message (length prefix included) of this many bytes is in `out`.
    Send(usize),
    /// Records were read but none answered yet: call again (after yielding).
    Again,
    /// Nothing to send until more input arrives.
    Idle,
    /// Everything owed has been sent and the connection should be closed
    /// (after NotAllowed or QueryTerminated).
    Close,
    /// An active leasequery begins: register this connection's change queue now, then
    /// poll again (the catch-up scan starts after the queue exists, so no change is lost
    /// between the two).
    Subscribe,
    /// The DHCPTLS answer (a `Send` before this) is written: once it is on the wire, run the
    /// TLS handshake as server on the connection (the stream bytes `feed` did not take are
    /// its first), then call [`Session::tls_established`] and go on inside TLS. The session
    /// takes no input until then.
    StartTls,
}

/// The kind of query being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mac { htype: u8, hlen: u8, hw: [u8; 16] },
    ClientId(ClientKey),
    RelayId,
    RemoteId,
    All,
}

/// The query being answered: its raw message (the replies copy its header), what it
/// asks, and where the scan is.
struct Active {
    req: Vec<u8>,
    kind: Kind,
    /// Relay-id / remote-id value.
    value: [u8; 255],
    value_len: usize,
    start: Option<u32>,
    end: Option<u32>,
    cursor: u32,
}

/// An active leasequery subscription (RFC 7724).
struct Subscription {
    /// The DHCPACTIVELEASEQUERY (every message copies its header).
    req: Vec<u8>,
    kind: Kind,
    value: [u8; 255],
    value_len: usize,
    start: Option<u32>,
    /// The catch-up scan's next record; None once it ended (or without query-start-time).
    cursor: Option<u32>,
    /// Changes for records the scan has passed, kept until CatchUpComplete is sent.
    pending: VecDeque<Change>,
    /// Whether CatchUpComplete is owed (the scan ended, the status not yet written).
    complete_owed: bool,
}

/// Changes a catching-up subscriber keeps by default ([`Session::set_queue_limit`]).
pub const DEFAULT_QUEUE: usize = 16_384;

/// One connection's bulk leasequery state.
pub struct Session {
    allowed: bool,
    /// The frame being assembled (length prefix included).
    frame: Vec<u8>,
    /// Bytes of the stream taken so far (for error offsets).
    stream_at: u64,
    queue: VecDeque<Vec<u8>>,
    active: Option<Active>,
    /// Set by [`Session::terminate`]: answer the active query QueryTerminated, then close.
    terminating: bool,
    close: bool,
    server_id: Ipv4Addr,
    sub: Option<Box<Subscription>>,
    /// Most changes kept while catching up (the driver's queue size).
    queue_limit: usize,
    /// What the server offers (DHCPTLS).
    tls: TlsMode,
    tls_state: TlsState,
    /// Frames taken so far (a DHCPTLS is accepted only as the first).
    frames: u64,
}

impl Session {
    /// A session for a requestor that is (or is not) allowed to ask; `server_id` goes
    /// into option 54 of every answer.
    pub fn new(allowed: bool, server_id: Ipv4Addr) -> Self {
        Session {
            allowed,
            frame: Vec::with_capacity(2 + MAX_MESSAGE),
            stream_at: 0,
            queue: VecDeque::with_capacity(MAX_QUEUED),
            active: None,
            terminating: false,
            close: false,
            server_id,
            sub: None,
            queue_limit: DEFAULT_QUEUE,
            tls: TlsMode::Off,
            tls_state: TlsState::Clear,
            frames: 0,
        }
    }

    /// What the server offers on this connection (before any input; default
    /// [`TlsMode::Off`]).
    pub fn set_tls(&mut self, mode: TlsMode) {
        self.tls = mode;
    }

    /// The driver finished the TLS handshake that [`Poll::StartTls`] asked for: the session
    /// goes on inside TLS (and takes input again).
    pub fn tls_established(&mut self) {
        if self.tls_state == TlsState::Handshake {
            self.tls_state = TlsState::Established;
        }
    }

    /// Whether the connection runs inside TLS.
    pub fn in_tls(&self) -> bool {
        self.tls_state == TlsState::Established
    }

    /// Most changes a catching-up subscriber keeps for records the scan passed (the
    /// driver's per-subscriber queue size); beyond it the subscriber is cut off.
    pub fn set_queue_limit(&mut self, n: usize) {
        self.queue_limit = n.max(1);
    }

    /// Whether an active leasequery runs on this connection (the driver's idle timeout
    /// does not apply then: the requestor sends nothing more).
    pub fn subscribed(&self) -> bool {
        self.sub.is_some()
    }

    /// Whether the catch-up phase is running (or its CatchUpComplete is not yet written).
    pub fn catching_up(&self) -> bool {
        self.sub
            .as_ref()
            .is_some_and(|s| s.cursor.is_some() || s.complete_owed)
    }

    /// Whether [`Session::feed`] would take bytes now (false while the queue is full
    /// or the session is closing).
    pub fn wants_input(&self) -> bool {
        !self.close
            && !self.terminating
            && self.queue.len() < MAX_QUEUED
            && matches!(self.tls_state, TlsState::Clear | TlsState::Established)
    }

    /// Whether a query is being answered or waits (a subscription in its live phase is
    /// not busy: it waits for changes).
    pub fn busy(&self) -> bool {
        self.active.is_some() || !self.queue.is_empty() || self.catching_up()
    }

    /// Takes stream bytes; returns how many it took (fewer than given while the
    /// queue is full: offer the rest again after polling). Counts each complete frame.
    pub fn feed(&mut self, data: &[u8], stats: &BulkStats) -> Result<usize, Fatal> {
        let mut taken = 0;
        while taken < data.len() && self.wants_input() {
            let want = if self.frame.len() < 2 {
                2 - self.frame.len()
            } else {
                let len = usize::from(u16::from_be_bytes([self.frame[0], self.frame[1]]));
                if len == 0 || len > MAX_MESSAGE {
                    return Err(Fatal::FrameLength {
                        len,
                        at: self.stream_at - 2,
                    });
                }
                2 + len - self.frame.len()
            };
            let n = want.min(data.len() - taken);
            self.frame.extend_from_slice(&data[taken..taken + n]);
            taken += n;
            self.stream_at += n as u64;
            if self.frame.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.frame[0], self.frame[1]]));
                if len == 0 || len > MAX_MESSAGE {
                    return Err(Fatal::FrameLength {
                        len,
                        at: self.stream_at - self.frame.len() as u64,
                    });
                }
                if self.frame.len() == 2 + len {
                    BulkStats::inc(&stats.queries);
                    self.frames += 1;
                    if self.frames == 1
                        && self.tls != TlsMode::Off
                        && msg_type(&self.frame[2..]) == Some(MessageType::Tls)
                    {
                        // What follows is the requestor's TLS handshake, not frames.
                        self.tls_state = TlsState::Asked;
                    }
                    self.queue.push_back(self.frame[2..].to_vec());
                    self.frame.clear();
                }
            }
        }
        Ok(taken)
    }

    /// Ends the query being answered with QueryTerminated (shutdown); the session
    /// closes after that message.
    pub fn terminate(&mut self) {
        self.terminating = true;
    }

    /// Writes the next answer message into `out` (at least [`MIN_OUT`] bytes); bulk
    /// queries only (an active leasequery gets no changes: see [`Session::poll_with`]).
    pub fn poll(
        &mut self,
        table: &LeaseTable,
        now: u32,
        out: &mut [u8],
        stats: &BulkStats,
    ) -> Poll {
        self.poll_with(table, now, out, stats, &mut NoChanges)
    }

    /// Writes the next answer message into `out` (at least [`MIN_OUT`] bytes); a
    /// subscribed connection takes its binding changes from `changes`.
    pub fn poll_with(
        &mut self,
        table: &LeaseTable,
        now: u32,
        out: &mut [u8],
        stats: &BulkStats,
        changes: &mut dyn ChangeSource,
    ) -> Poll {
        if self.close {
            return Poll::Close;
        }
        if self.terminating {
            self.close = true;
            self.queue.clear();
            if let Some(sub) = self.sub.take() {
                BulkStats::inc(&stats.terminated);
                return self.done(
                    &sub.req,
                    Status::QueryTerminated,
                    "server shutting down",
                    now,
                    out,
                );
            }
            return match self.active.take() {
                Some(a) => {
                    BulkStats::inc(&stats.terminated);
                    self.done(
                        &a.req,
                        Status::QueryTerminated,
                        "server shutting down",
                        now,
                        out,
                    )
                }
                None => Poll::Close,
            };
        }
        if self.tls_state == TlsState::Answered {
            self.tls_state = TlsState::Handshake;
            return Poll::StartTls;
        }
        if self.tls_state == TlsState::Handshake {
            return Poll::Idle;
        }
        if self.sub.is_some() {
            return self.poll_subscribed(table, now, out, stats, changes);
        }
        if self.active.is_none() {
            let Some(raw) = self.queue.pop_front() else {
                return Poll::Idle;
            };
            if !self.allowed {
                BulkStats::inc(&stats.not_allowed);
                self.close = true;
                self.queue.clear();
                return self.done(
                    &raw,
                    Status::NotAllowed,
                    "not in leasequery-allow",
                    now,
                    out,
                );
            }
            let kind = msg_type(&raw);
            if kind == Some(MessageType::Tls) {
                return self.answer_tls(&raw, now, out, stats);
            }
            if kind.is_some_and(|k| !supported_over_tcp(k)) {
                return self.unsupported(&raw, now, out, stats);
            }
            if self.tls == TlsMode::Require && self.tls_state != TlsState::Established {
                BulkStats::inc(&stats.tls_required);
                self.close = true;
                self.queue.clear();
                return self.done(
                    &raw,
                    Status::NotAllowed,
                    "TLS required: send DHCPTLS first",
                    now,
                    out,
                );
            }
            if kind == Some(MessageType::ActiveLeaseQuery) {
                return match parse_active(raw) {
                    Ok(sub) => {
                        BulkStats::inc(&stats.subscriptions);
                        self.sub = Some(Box::new(sub));
                        Poll::Subscribe
                    }
                    Err((raw, why)) => {
                        BulkStats::inc(&stats.malformed);
                        self.done(&raw, Status::MalformedQuery, why, now, out)
                    }
                };
            }
            match parse_query(raw) {
                Ok(a) => self.active = Some(a),
                Err((raw, why)) => {
                    BulkStats::inc(&stats.malformed);
                    return self.done(&raw, Status::MalformedQuery, why, now, out);
                }
            }
        }
        let Some(a) = self.active.as_mut() else {
            return Poll::Idle;
        };
        let total = table.len();
        let mut budget = SCAN_BUDGET;
        while a.cursor < total {
            if budget == 0 {
                return Poll::Again;
            }
            budget -= 1;
            let Some(slot) = table.slot(a.cursor) else {
                break;
            };
            a.cursor += 1;
            let (l, var) = table.read_with_var(slot);
            let Some(kind) = report(a, &l, &var, now) else {
                continue;
            };
            return match write_binding(&a.req, &l, &var, kind, self.server_id, now, out) {
                Some(n) => {
                    BulkStats::inc(if kind == MessageType::LeaseActive {
                        &stats.active
                    } else {
                        &stats.unassigned
                    });
                    Poll::Send(n)
                }
                None => {
                    // Our own answer did not fit: end the query rather than skip a binding.
                    let a = self.active.take();
                    BulkStats::inc(&stats.terminated);
                    match a {
                        Some(a) => {
                            self.done(&a.req, Status::UnspecFail, "answer too long", now, out)
                        }
                        None => Poll::Idle,
                    }
                }
            };
        }
        let a = self.active.take();
        BulkStats::inc(&stats.done);
        match a {
            Some(a) => self.done(&a.req, Status::Success, "", now, out),
            None => Poll::Idle,
        }
    }

    /// Writes a DHCPLEASEQUERYDONE for query `raw` (which may be unparseable).
    fn done(&self, raw: &[u8], status: Status, text: &str, now: u32, out: &mut [u8]) -> Poll {
        let t = MessageType::LeaseQueryDone;
        match write_status(raw, t, status, text, self.server_id, now, out) {
            Some(n) => Poll::Send(n),
            None => Poll::Close,
        }
    }

    /// A message whose type is not one of the leasequery connection's (a DISCOVER, a
    /// LEASEQUERY, ...): RFC 7724 section 8.1.1 (updating RFC 6926) has the server close the
    /// connection. Answered DHCPLEASEQUERYDONE / MalformedQuery naming why, then closed.
    fn unsupported(&mut self, raw: &[u8], now: u32, out: &mut [u8], stats: &BulkStats) -> Poll {
        BulkStats::inc(&stats.malformed);
        self.close = true;
        self.queue.clear();
        let text = "message type not supported over TCP: connection closed (RFC 7724 8.1.1)";
        self.done(raw, Status::MalformedQuery, text, now, out)
    }

    /// Answers a DHCPTLS: Success when it is the first message and TLS is offered (the
    /// handshake follows), else TLSConnectionRefused with the reason.
    fn answer_tls(&mut self, raw: &[u8], now: u32, out: &mut [u8], stats: &BulkStats) -> Poll {
        let why = match (self.tls, self.tls_state) {
            (TlsMode::Off, _) => "TLS is not offered",
            (_, TlsState::Asked) => {
                BulkStats::inc(&stats.tls_accepted);
                return match write_status(
                    raw,
                    MessageType::Tls,
                    Status::Success,
                    "",
                    self.server_id,
                    now,
                    out,
                ) {
                    Some(n) => {
                        self.tls_state = TlsState::Answered;
                        Poll::Send(n)
                    }
                    None => {
                        self.close = true;
                        Poll::Close
                    }
                };
            }
            (_, TlsState::Established) => "TLS is already established",
            _ => "DHCPTLS is accepted only as the connection's first message",
        };
        BulkStats::inc(&stats.tls_refused);
        self.tls_refused(raw, why, now, out)
    }

    fn tls_refused(&self, raw: &[u8], text: &str, now: u32, out: &mut [u8]) -> Poll {
        let (t, st) = (MessageType::Tls, Status::TlsConnectionRefused);
        match write_status(raw, t, st, text, self.server_id, now, out) {
            Some(n) => Poll::Send(n),
            None => Poll::Close,
        }
    }

    /// The subscribed connection's next message: a refusal for a query that came in
    /// meanwhile, the cut-off, a catch-up record, CatchUpComplete, or a live change.
    fn poll_subscribed(
        &mut self,
        table: &LeaseTable,
        now: u32,
        out: &mut [u8],
        stats: &BulkStats,
        changes: &mut dyn ChangeSource,
    ) -> Poll {
        let Some(mut sub) = self.sub.take() else {
            return Poll::Idle;
        };
        let r = self.poll_sub(&mut sub, table, now, out, stats, changes);
        if !self.close {
            self.sub = Some(sub);
        }
        r
    }

    fn poll_sub(
        &mut self,
        sub: &mut Subscription,
        table: &LeaseTable,
        now: u32,
        out: &mut [u8],
        stats: &BulkStats,
        changes: &mut dyn ChangeSource,
    ) -> Poll {
        let lost = changes.lost();
        if lost > 0 || sub.pending.len() > self.queue_limit {
            BulkStats::inc(&stats.cut_off);
            self.close = true;
            self.queue.clear();
            let text = if lost > 0 {
                format!("requestor fell behind: {lost} changes not queued")
            } else {
                format!(
                    "requestor fell behind: over {} changes wait for the catch-up to end",
                    self.queue_limit
                )
            };
            return self.done(&sub.req, Status::DataMissing, &text, now, out);
        }
        if let Some(raw) = self.queue.pop_front() {
            let kind = msg_type(&raw);
            if kind == Some(MessageType::Tls) {
                return self.answer_tls(&raw, now, out, stats);
            }
            if kind.is_some_and(|k| !supported_over_tcp(k)) {
                return self.unsupported(&raw, now, out, stats);
            }
            BulkStats::inc(&stats.connection_active);
            let text = "an active leasequery runs on this connection";
            return self.done(&raw, Status::ConnectionActive, text, now, out);
        }
        if let Some(mut cur) = sub.cursor {
            let total = table.len();
            let mut budget = SCAN_BUDGET;
            while cur < total {
                if budget == 0 {
                    sub.cursor = Some(cur);
                    return Poll::Again;
                }
                budget -= 1;
                // Changes made before this read: a record not yet scanned will be read
                // with that state or a newer one; a scanned one's change is newer than
                // what was sent for it, so it is kept for after the catch-up.
                while let Some(c) = changes.next_change() {
                    if c.slot >= cur {
                        continue;
                    }
                    sub.pending.push_back(c);
                    if sub.pending.len() > self.queue_limit {
                        sub.cursor = Some(cur);
                        return self.poll_sub(sub, table, now, out, stats, changes);
                    }
                }
                let Some(slot) = table.slot(cur) else {
                    break;
                };
                cur += 1;
                let (l, var) = table.read_with_var(slot);
                if !matches(sub.kind, &sub.value[..sub.value_len], &var) {
                    continue;
                }
                if sub.start.is_some_and(|s| changed_since(&l, now) < s) {
                    continue;
                }
                sub.cursor = Some(cur);
                let kind = kind_of(&l, now);
                return match write_binding(&sub.req, &l, &var, kind, self.server_id, now, out) {
                    Some(n) => {
                        BulkStats::inc(&stats.catchup_sent);
                        Poll::Send(n)
                    }
                    None => self.answer_too_long(sub, now, out, stats),
                };
            }
            sub.cursor = None;
            sub.complete_owed = true;
        }
        if sub.complete_owed {
            sub.complete_owed = false;
            BulkStats::inc(&stats.catchup_complete);
            let (t, st) = (MessageType::LeaseQueryStatus, Status::CatchUpComplete);
            return match write_status(
                &sub.req,
                t,
                st,
                "catch-up complete",
                self.server_id,
                now,
                out,
            ) {
                Some(n) => Poll::Send(n),
                None => Poll::Close,
            };
        }
        loop {
            let Some(c) = sub.pending.pop_front().or_else(|| changes.next_change()) else {
                return Poll::Idle;
            };
            let var = var_of_change(table, &c);
            if !matches(sub.kind, &sub.value[..sub.value_len], &var) {
                continue;
            }
            let l = &c.lease;
            return match write_binding(&sub.req, l, &var, kind_of(l, now), self.server_id, now, out)
            {
                Some(n) => {
                    BulkStats::inc(&stats.changes_sent);
                    Poll::Send(n)
                }
                None => self.answer_too_long(sub, now, out, stats),
            };
        }
    }

    /// Our own message did not fit: end the subscription rather than skip a binding.
    fn answer_too_long(
        &mut self,
        sub: &Subscription,
        now: u32,
        out: &mut [u8],
        stats: &BulkStats,
    ) -> Poll {
        BulkStats::inc(&stats.terminated);
        self.close = true;
        self.done(&sub.req, Status::UnspecFail, "answer too long", now, out)
    }
}

/// The message type (option 53) of a frame, if it parses that far.
/// The message types a leasequery TCP connection carries from a requestor (RFC 6926, RFC
/// 7724); any other closes the connection (RFC 7724 section 8.1.1).
fn supported_over_tcp(k: MessageType) -> bool {
    matches!(
        k,
        MessageType::BulkLeaseQuery | MessageType::ActiveLeaseQuery | MessageType::Tls
    )
}

fn msg_type(raw: &[u8]) -> Option<MessageType> {
    let msg = Message::new_checked(raw).ok()?;
    msg.summary().ok()?.message_type
}

/// LeaseActive for an unexpired ACTIVE record, else LeaseUnassigned.
fn kind_of(l: &Lease, now: u32) -> MessageType {
    if l.state == LeaseState::Active && l.expiry > now {
        MessageType::LeaseActive
    } else {
        MessageType::LeaseUnassigned
    }
}

/// Whether a record with variable data `var` is one a subscription with filter `kind` /
/// `value` reports.
fn matches(kind: Kind, value: &[u8], var: &VarData) -> bool {
    match kind {
        Kind::RelayId => sub_option(var.relay_agent_info(), relay_sub::RELAY_ID) == Some(value),
        Kind::RemoteId => sub_option(var.relay_agent_info(), relay_sub::REMOTE_ID) == Some(value),
        _ => true,
    }
}

/// The variable data of a queued change: the record's handle names it, so the table's
/// current data are that version's when the handle is still the same; when the record's
/// data changed again since (a later change is queued for that), the inline part only.
fn var_of_change(table: &LeaseTable, c: &Change) -> VarData {
    if !c.lease.var.is_side() {
        return c.lease.var.inline_data();
    }
    match table.slot(c.slot) {
        Some(slot) => {
            let (now_l, var) = table.read_with_var(slot);
            if now_l.var == c.lease.var {
                var
            } else {
                VarData::EMPTY
            }
        }
        None => VarData::EMPTY,
    }
}

/// Parses a DHCPACTIVELEASEQUERY; on failure gives the frame back with the reason.
fn parse_active(raw: Vec<u8>) -> Result<Subscription, (Vec<u8>, &'static str)> {
    let r = (|| {
        let msg = Message::new_checked(&raw).map_err(|_| "not a DHCP message")?;
        if msg.op() != OP_BOOTREQUEST {
            return Err("not a BOOTREQUEST");
        }
        let sum = msg.summary().map_err(|_| "malformed options")?;
        if !msg.ciaddr().is_unspecified() {
            return Err("ciaddr set: an active leasequery is not by address");
        }
        let hw = msg.chaddr();
        if (msg.htype() != 0 && hw.iter().any(|&b| b != 0)) || sum.client_id.is_some() {
            return Err("an active leasequery filters by relay-id or remote-id only");
        }
        let mut start = None;
        for o in msg.options() {
            let (code, val, _) = o.map_err(|_| "malformed options")?;
            match code {
                opt::QUERY_START_TIME => {
                    let v =
                        <[u8; 4]>::try_from(val).map_err(|_| "query-start-time is not 4 bytes")?;
                    start = Some(u32::from_be_bytes(v));
                }
                opt::QUERY_END_TIME => {
                    return Err("query-end-time in an active leasequery");
                }
                _ => {}
            }
        }
        let mut kind = Kind::All;
        let mut value = [0u8; 255];
        let mut value_len = 0;
        if let Some(ri) = sum.relay_agent_info {
            relay_id_queries(ri, |k, v| {
                if kind != Kind::All {
                    return Err("more than one query type");
                }
                value[..v.len()].copy_from_slice(v);
                value_len = v.len();
                kind = k;
                Ok(())
            })?;
        }
        Ok((kind, value, value_len, start))
    })();
    match r {
        Ok((kind, value, value_len, start)) => Ok(Subscription {
            req: raw,
            kind,
            value,
            value_len,
            start,
            cursor: start.map(|_| 0),
            pending: VecDeque::new(),
            complete_owed: false,
        }),
        Err(why) => Err((raw, why)),
    }
}

/// Parses a query frame; on failure gives the frame back with the reason.
fn parse_query(raw: Vec<u8>) -> Result<Active, (Vec<u8>, &'static str)> {
    match parse_inner(&raw) {
        Ok((kind, value, value_len, start, end)) => Ok(Active {
            req: raw,
            kind,
            value,
            value_len,
            start,
            end,
            cursor: 0,
        }),
        Err(why) => Err((raw, why)),
    }
}

type Parsed = (Kind, [u8; 255], usize, Option<u32>, Option<u32>);

fn parse_inner(raw: &[u8]) -> Result<Parsed, &'static str> {
    let msg = Message::new_checked(raw).map_err(|_| "not a DHCP message")?;
    if msg.op() != OP_BOOTREQUEST {
        return Err("not a BOOTREQUEST");
    }
    let sum = msg.summary().map_err(|_| "malformed options")?;
    if sum.message_type != Some(MessageType::BulkLeaseQuery) {
        return Err("not a DHCPBULKLEASEQUERY");
    }
    if !msg.ciaddr().is_unspecified() {
        return Err("ciaddr set: a query by address is RFC 4388 leasequery");
    }
    let mut start = None;
    let mut end = None;
    for o in msg.options() {
        let (code, val, _) = o.map_err(|_| "malformed options")?;
        let t = || <[u8; 4]>::try_from(val).ok().map(u32::from_be_bytes);
        match code {
            opt::QUERY_START_TIME => start = Some(t().ok_or("query-start-time is not 4 bytes")?),
            opt::QUERY_END_TIME => end = Some(t().ok_or("query-end-time is not 4 bytes")?),
            _ => {}
        }
    }
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err("query-start-time after query-end-time");
        }
    }
    let mut kinds = Vec::<Kind>::new();
    let mut value = [0u8; 255];
    let mut value_len = 0;
    let hw = msg.chaddr();
    if msg.htype() != 0 && !hw.is_empty() && hw.iter().any(|&b| b != 0) {
        let mut h = [0u8; 16];
        h[..hw.len()].copy_from_slice(hw);
        kinds.push(Kind::Mac {
            htype: msg.htype(),
            hlen: msg.hlen(),
            hw: h,
        });
    }
    if let Some(id) = sum.client_id {
        kinds.push(Kind::ClientId(ClientKey::from_client_id(id)));
    }
    if let Some(ri) = sum.relay_agent_info {
        relay_id_queries(ri, |k, v| {
            value[..v.len()].copy_from_slice(v);
            value_len = v.len();
            kinds.push(k);
            Ok(())
        })?;
    }
    match kinds.as_slice() {
        [] => Ok((Kind::All, value, 0, start, end)),
        [k] => Ok((*k, value, value_len, start, end)),
        _ => Err("more than one query type"),
    }
}

/// The relay-id and remote-id sub-options of a query's option 82, each handed to `on` with
/// its query kind (bulk and active queries alike); a malformed option 82 or an empty id is
/// refused.
fn relay_id_queries(
    ri: &[u8],
    mut on: impl FnMut(Kind, &[u8]) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    for sub in SubOptionIter::new(ri) {
        let (code, v) = sub.map_err(|_| "malformed option 82")?;
        let k = match code {
            relay_sub::RELAY_ID => Kind::RelayId,
            relay_sub::REMOTE_ID => Kind::RemoteId,
            _ => continue,
        };
        if v.is_empty() {
            return Err("empty relay-id or remote-id");
        }
        on(k, v)?;
    }
    Ok(())
}

/// The sub-option `code` of an option 82 value, if present.
fn sub_option(ri: &[u8], code: u8) -> Option<&[u8]> {
    SubOptionIter::new(ri)
        .map_while(Result::ok)
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v)
}

/// Whether record `l` (with variable data `var`) answers the query, and how.
fn report(a: &Active, l: &Lease, var: &VarData, now: u32) -> Option<MessageType> {
    let matches = match a.kind {
        Kind::All => true,
        _ if !l.state.binds_client() => false,
        Kind::Mac { htype, hlen, hw } => {
            l.htype == htype && l.hlen == hlen && l.hw() == &hw[..usize::from(hlen).min(16)]
        }
        Kind::ClientId(key) => l.client == key,
        Kind::RelayId => {
            sub_option(var.relay_agent_info(), relay_sub::RELAY_ID) == Some(&a.value[..a.value_len])
        }
        Kind::RemoteId => {
            sub_option(var.relay_agent_info(), relay_sub::REMOTE_ID)
                == Some(&a.value[..a.value_len])
        }
    };
    if !matches {
        return None;
    }
    let since = state_since(l);
    if a.start.is_some_and(|s| since < s) || a.end.is_some_and(|e| since > e) {
        return None;
    }
    if l.state == LeaseState::Active && l.expiry > now {
        Some(MessageType::LeaseActive)
    } else if a.kind == Kind::All || a.start.is_some() {
        Some(MessageType::LeaseUnassigned)
    } else {
        None
    }
}

/// Writes the length prefix for a message of `n` bytes at `out[2..]`.
fn framed(out: &mut [u8], n: usize) -> usize {
    let len = u16::try_from(n).unwrap_or(u16::MAX);
    out[..2].copy_from_slice(&len.to_be_bytes());
    2 + n
}

fn write_binding(
    req: &[u8],
    l: &Lease,
    var: &VarData,
    kind: MessageType,
    server_id: Ipv4Addr,
    now: u32,
    out: &mut [u8],
) -> Option<usize> {
    if out.len() < MIN_OUT {
        return None;
    }
    let req = Message::new_checked(req).ok()?;
    let body = &mut out[2..MIN_OUT];
    let limit = body.len();
    let mut w = ReplyWriter::new(body, &req, limit).ok()?;
    w.option(opt::MESSAGE_TYPE, &[kind as u8]).ok()?;
    w.option_ip(opt::SERVER_ID, server_id).ok()?;
    w.option_u32(opt::BASE_TIME, now).ok()?;
    w.set_ciaddr(l.addr);
    if l.state.binds_client() {
        w.set_chaddr(l.htype, l.hlen, &l.chaddr);
    } else {
        w.set_chaddr(0, 0, &[0; 16]);
    }
    w.option_u32(opt::START_TIME_OF_STATE, now.saturating_sub(state_since(l)))
        .ok()?;
    w.option(opt::DHCP_STATE, &[dhcp_state(l, now) as u8])
        .ok()?;
    if kind == MessageType::LeaseActive {
        w.option_u32(opt::LEASE_TIME, l.expiry.saturating_sub(now))
            .ok()?;
        if l.cltt != 0 {
            w.option_u32(
                opt::CLIENT_LAST_TRANSACTION_TIME,
                now.saturating_sub(l.cltt),
            )
            .ok()?;
        }
    }
    if l.state.binds_client() {
        if l.client.kind() == KeyKind::ClientId && !l.client.is_hashed() {
            w.option(opt::CLIENT_ID, l.client.as_bytes()).ok()?;
        }
        let ri = var.relay_agent_info();
        if !ri.is_empty() {
            w.option(opt::RELAY_AGENT_INFO, ri).ok()?;
        }
    }
    let n = w.finish();
    Some(framed(out, n))
}

/// A DHCPLEASEQUERYDONE (or `kind`: DHCPLEASEQUERYSTATUS, DHCPTLS) answering `raw` (its
/// xid; a header rebuilt when `raw` does not parse). Status Success carries no option 151.
fn write_status(
    raw: &[u8],
    kind: MessageType,
    status: Status,
    text: &str,
    server_id: Ipv4Addr,
    now: u32,
    out: &mut [u8],
) -> Option<usize> {
    if out.len() < MIN_OUT {
        return None;
    }
    // The replies copy the query's header: use a clean one (xid, flags, giaddr,
    // htype/hlen/chaddr from the query when there), so any frame gets an answer.
    let mut hdr = [0u8; 240];
    let n = raw.len().min(44);
    hdr[..n].copy_from_slice(&raw[..n]);
    if hdr[2] > 16 {
        hdr[2] = 0;
    }
    hdr[236..240].copy_from_slice(&MAGIC_COOKIE);
    let req = Message::new_checked(&hdr).ok()?;
    let body = &mut out[2..MIN_OUT];
    let limit = body.len();
    let mut w = ReplyWriter::new(body, &req, limit).ok()?;
    w.option(opt::MESSAGE_TYPE, &[kind as u8]).ok()?;
    w.option_ip(opt::SERVER_ID, server_id).ok()?;
    w.option_u32(opt::BASE_TIME, now).ok()?;
    if status != Status::Success {
        let mut v = [0u8; 128];
        v[0] = status as u8;
        let t = text.as_bytes();
        let k = t.len().min(v.len() - 1);
        v[1..1 + k].copy_from_slice(&t[..k]);
        w.option(opt::STATUS_CODE, &v[..1 + k]).ok()?;
    }
    let n = w.finish();
    Some(framed(out, n))
}

/// Builds a DHCPBULKLEASEQUERY (client side and tests): `xid`, the query, optional
/// start / end times; returns the framed message (length prefix included).
pub fn build_query(xid: u32, q: &QuerySpec<'_>, start: Option<u32>, end: Option<u32>) -> Vec<u8> {
    build_message(MessageType::BulkLeaseQuery, xid, q, start, end)
}

/// Builds a DHCPACTIVELEASEQUERY (RFC 7724; client side and tests): `q` is
/// [`QuerySpec::All`], a relay-id or a remote-id; `start` asks for the catch-up of every
/// change since then. Returns the framed message.
pub fn build_active_query(xid: u32, q: &QuerySpec<'_>, start: Option<u32>) -> Vec<u8> {
    build_message(MessageType::ActiveLeaseQuery, xid, q, start, None)
}

/// Builds a DHCPTLS request (RFC 7724 §6.2; framed).
pub fn build_tls_request(xid: u32) -> Vec<u8> {
    build_message(MessageType::Tls, xid, &QuerySpec::All, None, None)
}

/// What a server answered a DHCPTLS (requestor side, [`parse_tls_answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsAnswer {
    /// DHCPTLS without a status (or Success): start the TLS handshake now.
    Start,
    /// DHCPTLS with TLSConnectionRefused, and the server's text.
    Refused(String),
}

/// Reads the answer to the DHCPTLS with `xid` (one message, without its length prefix).
/// `Err` names what is wrong: not a DHCP message, another xid, NotAllowed (the requestor's
/// address is not allowed) or any other message or status.
pub fn parse_tls_answer(b: &[u8], xid: u32) -> Result<TlsAnswer, String> {
    let r = parse_reply(b)?;
    if r.xid != xid {
        return Err(format!(
            "the answer is for xid {:#x}, not the DHCPTLS's {xid:#x}",
            r.xid
        ));
    }
    let status = r
        .status
        .as_ref()
        .map(|(c, t)| (Status::from_u8(*c), *c, t.as_str()));
    match (r.kind, status) {
        (MessageType::Tls, None | Some((Some(Status::Success), ..))) => Ok(TlsAnswer::Start),
        (MessageType::Tls, Some((Some(Status::TlsConnectionRefused), _, t))) => {
            Ok(TlsAnswer::Refused(t.to_string()))
        }
        (kind, Some((s, code, t))) => Err(match s {
            Some(s) => format!("{kind:?} with status {s:?}: {t}"),
            None => format!("{kind:?} with status {code}: {t}"),
        }),
        (kind, None) => Err(format!("{kind:?} (no status) instead of DHCPTLS")),
    }
}

fn build_message(
    kind: MessageType,
    xid: u32,
    q: &QuerySpec<'_>,
    start: Option<u32>,
    end: Option<u32>,
) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0] = OP_BOOTREQUEST;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[236..240].copy_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    match q {
        QuerySpec::Mac { htype, hw } => {
            let n = hw.len().min(16);
            m[1] = *htype;
            m[2] = n as u8;
            m[28..28 + n].copy_from_slice(&hw[..n]);
        }
        QuerySpec::ClientId(id) => {
            let n = id.len().min(255);
            m.extend_from_slice(&[opt::CLIENT_ID, n as u8]);
            m.extend_from_slice(&id[..n]);
        }
        QuerySpec::RelayId(v) | QuerySpec::RemoteId(v) => {
            let code = if matches!(q, QuerySpec::RelayId(_)) {
                relay_sub::RELAY_ID
            } else {
                relay_sub::REMOTE_ID
            };
            let n = v.len().min(253);
            m.extend_from_slice(&[opt::RELAY_AGENT_INFO, (n + 2) as u8, code, n as u8]);
            m.extend_from_slice(&v[..n]);
        }
        QuerySpec::All => {}
    }
    if let Some(s) = start {
        m.extend_from_slice(&[opt::QUERY_START_TIME, 4]);
        m.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(e) = end {
        m.extend_from_slice(&[opt::QUERY_END_TIME, 4]);
        m.extend_from_slice(&e.to_be_bytes());
    }
    m.push(opt::END);
    let mut f = Vec::with_capacity(2 + m.len());
    f.extend_from_slice(&(m.len() as u16).to_be_bytes());
    f.extend_from_slice(&m);
    f
}

/// What a bulk leasequery asks (for [`build_query`]).
#[derive(Clone, Copy, Debug)]
pub enum QuerySpec<'a> {
    /// By hardware type and address.
    Mac {
        /// Hardware type (1 = Ethernet).
        htype: u8,
        /// The address (at most 16 bytes).
        hw: &'a [u8],
    },
    /// By option 61 value (type byte included).
    ClientId(&'a [u8]),
    /// By RFC 6925 relay-id (option 82 sub-option 12).
    RelayId(&'a [u8]),
    /// By remote-id (option 82 sub-option 2).
    RemoteId(&'a [u8]),
    /// Every configured address.
    All,
}

/// One answer message as a requestor reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The query's xid, echoed.
    pub xid: u32,
    /// LeaseActive, LeaseUnassigned or LeaseQueryDone.
    pub kind: MessageType,
    /// The address (ciaddr).
    pub addr: Ipv4Addr,
    /// The client's hardware address (htype, then chaddr[..hlen]).
    pub htype: u8,
    /// chaddr[..hlen].
    pub hw: Vec<u8>,
    /// Option 156.
    pub state: Option<u8>,
    /// Option 51: seconds left.
    pub lease_time: Option<u32>,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 82.
    pub relay_agent_info: Option<Vec<u8>>,
    /// Option 151: code and message.
    pub status: Option<(u8, String)>,
    /// Option 152: the server's time when it sent the message (Unix seconds).
    pub base_time: Option<u32>,
}

/// Parses one answer message (without its length prefix); `Err` names what is wrong.
pub fn parse_reply(b: &[u8]) -> Result<Reply, String> {
    let m = Message::new_checked(b).map_err(|e| e.to_string())?;
    let mut r = Reply {
        xid: m.xid(),
        kind: MessageType::LeaseQueryDone,
        addr: m.ciaddr(),
        htype: m.htype(),
        hw: m.chaddr().to_vec(),
        state: None,
        lease_time: None,
        client_id: None,
        relay_agent_info: None,
        status: None,
        base_time: None,
    };
    let mut kind = None;
    for o in m.options() {
        let (code, v, off) = o.map_err(|e| e.to_string())?;
        let bad = || format!("option {code} at offset {off}: bad length {}", v.len());
        match code {
            opt::MESSAGE_TYPE => {
                kind = Some(
                    v.first()
                        .and_then(|&t| MessageType::from_u8(t))
                        .ok_or_else(bad)?,
                )
            }
            opt::DHCP_STATE => r.state = Some(*v.first().ok_or_else(bad)?),
            opt::LEASE_TIME => {
                r.lease_time = Some(u32::from_be_bytes(
                    <[u8; 4]>::try_from(v).map_err(|_| bad())?,
                ))
            }
            opt::CLIENT_ID => r.client_id = Some(v.to_vec()),
            opt::BASE_TIME => {
                r.base_time = Some(u32::from_be_bytes(
                    <[u8; 4]>::try_from(v).map_err(|_| bad())?,
                ))
            }
            opt::RELAY_AGENT_INFO => r.relay_agent_info = Some(v.to_vec()),
            opt::STATUS_CODE => {
                let (&c, t) = v.split_first().ok_or_else(bad)?;
                r.status = Some((c, String::from_utf8_lossy(t).into_owned()));
            }
            _ => {}
        }
    }
    r.kind = kind.ok_or("no message type (option 53)")?;
    Ok(r)
}
