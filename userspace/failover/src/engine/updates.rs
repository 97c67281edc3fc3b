//! Binding updates: the outgoing queue and its BNDUPD batches within the unacknowledged
//! window, BNDACKs, answering UPDREQ/UPDREQALL with UPDDONE, incoming BNDUPDs handed to the
//! driver, and pool requests (POOLREQ/POOLRESP).

use std::net::Ipv4Addr;

use crate::codec::{self, BindingTxn, Body, Message};
use crate::types::{Binding, BindingStatus, RejectReason, Role, ServerState};

use super::connection::Phase;
use super::{Action, FailoverEngine, UpdateId};

/// How many addresses the backup should hold: `backup_pct` percent of those available to
/// either partner (FREE + BACKUP), minus what it already holds.
pub fn backup_share(free: usize, backup: usize, backup_pct: u8) -> usize {
    let target = (free + backup) * backup_pct.min(100) as usize / 100;
    target.saturating_sub(backup)
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) binding: Binding,
}

/// One BNDUPD awaiting its BNDACK: its binding transactions with their queue sequence numbers.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) items: Vec<(u64, Binding)>,
    pub(super) sent_at: u32,
}

#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) gen: u64,
    pub(super) results: Vec<(Ipv4Addr, Option<(RejectReason, String)>)>,
    pub(super) remaining: usize,
}

#[derive(Debug)]
pub(super) struct Serving {
    pub(super) xid: u32,
    pub(super) all: bool,
    /// Set by `bindings_queued`: every queued entry with seq <= this is covered.
    pub(super) cover_seq: Option<u64>,
    /// Bindings the request covers (queued or in flight with seq <= `cover_seq`), counted
    /// by `bindings_queued`: the base of the resync progress.
    pub(super) total: usize,
}

impl FailoverEngine {
    /// A DHCP worker changed a lease: queue it for the partner (lazy; sent in batches by
    /// `poll_transmit`, never more than max-unacked-bndupd outstanding).
    pub fn lease_changed(&mut self, now: u32, binding: Binding) {
        self.tick(now);
        self.enqueue(binding);
    }

    /// Same as `lease_changed`, for bindings the driver queues after [`Action::SendBindings`].
    pub fn queue_binding(&mut self, binding: Binding) {
        self.enqueue(binding);
    }

    /// The driver has queued everything [`Action::SendBindings`] asked for.
    pub fn bindings_queued(&mut self, now: u32) {
        self.tick(now);
        let cover = self.seq;
        if self.serving.as_ref().is_some_and(|s| s.cover_seq.is_none()) {
            let total = self.pending.values().filter(|p| p.seq <= cover).count()
                + self
                    .inflight
                    .values()
                    .flat_map(|f| f.items.iter())
                    .filter(|(seq, _)| *seq <= cover)
                    .count();
            if let Some(s) = self.serving.as_mut() {
                s.cover_seq = Some(cover);
                s.total = total;
            }
        }
        self.check_updreq_done(now);
    }

    /// The driver wrote (or refused) the binding of [`Action::ApplyBinding`] `id`.
    pub fn binding_applied(
        &mut self,
        now: u32,
        id: UpdateId,
        result: Result<(), (RejectReason, String)>,
    ) {
        self.tick(now);
        let Some((gen, xid, idx)) = self.update_ids.remove(&id) else {
            return;
        };
        let done = match self.incoming.get_mut(&xid) {
            Some(inc) if inc.gen == gen => {
                if result.is_ok() {
                    // The partner's newer information replaced our record: an update of ours
                    // for this address that is still queued is stale; drop it (the `order`
                    // entry is skipped when its address has no pending entry).
                    if let Some((addr, _)) = inc.results.get(idx) {
                        self.pending.remove(addr);
                    }
                }
                if let Err(r) = result {
                    self.stats.bndupd_rejected_by_us += 1;
                    if let Some(slot) = inc.results.get_mut(idx) {
                        slot.1 = Some(r);
                    }
                }
                inc.remaining = inc.remaining.saturating_sub(1);
                inc.remaining == 0
            }
            _ => false,
        };
        if done {
            self.finish_incoming(now, xid);
        }
    }

    /// Our configuration gained addresses (a reload added a pool or grew a range): ask the
    /// partner for the updates it has not had acknowledged (UPDREQ). Updates for those
    /// addresses that we refused before (reject reason 1, "illegal IP address": not in any
    /// pool of ours yet, because the partner reloaded first) are then sent again at once
    /// instead of at the partner's next retry. Only in NORMAL with communications OK and
    /// with no UPDREQ of ours outstanding (in the other states the UPDREQ/UPDDONE exchange
    /// drives the state machine); returns whether it was sent. The UPDDONE that answers it
    /// changes no state in NORMAL.
    pub fn request_updates(&mut self, now: u32) -> bool {
        self.tick(now);
        if self.state != ServerState::Normal
            || !self.communications_ok()
            || self.sent_updreq.is_some()
        {
            return false;
        }
        self.send_updreq(now, false, "new addresses after a reload");
        true
    }

    /// Sends UPDREQ (or UPDREQALL) and notes the resynchronisation it starts.
    pub(super) fn send_updreq(&mut self, now: u32, all: bool, why: &str) {
        let xid = self.xid();
        self.sent_updreq = Some(xid);
        self.updreq_all = all;
        self.resync_received = 0;
        self.send(Message::new(
            now,
            xid,
            if all { Body::UpdReqAll } else { Body::UpdReq },
        ));
        self.event(
            now,
            super::events::FailoverEventKind::SyncStarted,
            format!(
                "{} sent in {}: {why}",
                if all { "UPDREQALL" } else { "UPDREQ" },
                self.state
            ),
            0,
        );
    }

    /// Secondary: the workers found no BACKUP address: send POOLREQ now instead of waiting for
    /// `pool_request_interval` (only in NORMAL with communications OK, and never while one is
    /// outstanding). The caller rate-limits.
    pub fn request_pool_now(&mut self, now: u32) {
        self.tick(now);
        if !self.poolreq_outstanding {
            self.next_poolreq_at = now;
        }
        self.maybe_poolreq(now);
    }

    /// Primary: answer to [`Action::PoolRequest`]: `granted` addresses moved to BACKUP.
    pub fn pool_response(&mut self, now: u32, id: u32, granted: u32) {
        self.tick(now);
        let Some((gen, xid)) = self.pool_requests.remove(&id) else {
            return;
        };
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.gen == gen && c.phase == Phase::Established)
        {
            self.send(Message::new(
                now,
                xid,
                Body::PoolResp {
                    addresses_transferred: granted,
                },
            ));
        }
    }

    fn enqueue(&mut self, b: Binding) {
        self.seq += 1;
        match self.pending.entry(b.addr) {
            // Keep the older sequence number: a newer version of an entry that an UPDREQ
            // covers is still covered (else UPDDONE could go out without this address).
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().binding = b,
            std::collections::hash_map::Entry::Vacant(e) => {
                self.order.push_back(b.addr);
                e.insert(Pending {
                    seq: self.seq,
                    binding: b,
                });
            }
        }
    }

    /// Binding transactions per BNDUPD for this partner (see `Config::max_bindings_per_bndupd`).
    fn bindings_per_bndupd(&self) -> usize {
        if self.partner_is_xdhcpd() {
            self.cfg.max_bindings_per_bndupd
        } else {
            1
        }
    }

    fn may_send_updates(&self) -> bool {
        if !self.communications_ok() {
            return false;
        }
        if self.serving.is_some() {
            return true;
        }
        // PAUSED: the bindings made before the pause still reach the partner while the
        // connection lasts (the operator stops the daemon after `pause`).
        matches!(
            self.state,
            ServerState::Normal
                | ServerState::CommunicationsInterrupted
                | ServerState::PartnerDown
                | ServerState::ConflictDone
                | ServerState::RecoverDone
                | ServerState::RecoverWait
                | ServerState::ResolutionInterrupted
                | ServerState::Paused
        )
    }

    /// Encoded size of one binding transaction inside a BNDUPD/BNDACK (`usize::MAX` when it
    /// cannot be encoded).
    fn txn_len(&mut self, t: &BindingTxn) -> usize {
        self.txn_scratch.clear();
        match codec::encode_txn(&mut self.txn_scratch, t) {
            Ok(()) => self.txn_scratch.len(),
            Err(_) => usize::MAX,
        }
    }

    /// Turns queued bindings into BNDUPD messages within the unacked window.
    pub(super) fn pump(&mut self) {
        if !self.may_send_updates() {
            return;
        }
        let window = match &self.conn {
            Some(c) => self
                .cfg
                .max_unacked_bndupd
                .min(c.partner_max_unacked.max(1)) as usize,
            None => return,
        };
        let batch = self.bindings_per_bndupd();
        let xdhcpd = self.partner_is_xdhcpd();
        while self.inflight.len() < window && !self.order.is_empty() {
            // Pack transactions until the batch is full or the next one would overflow the
            // 2048-byte message (the header and every transaction are counted exactly).
            let mut txns = Vec::new();
            let mut items = Vec::new();
            let mut len = codec::HEADER_LEN;
            while items.len() < batch {
                let Some(&addr) = self.order.front() else {
                    break;
                };
                let Some(p) = self.pending.get(&addr) else {
                    self.order.pop_front();
                    continue;
                };
                let txn = txn_for_partner(&p.binding, xdhcpd);
                // Unencodable: sent alone; `send` logs the encoding error.
                let txn_len = self.txn_len(&txn);
                if !items.is_empty() && len.saturating_add(txn_len) > codec::MAX_MESSAGE_LEN {
                    break;
                }
                len = len.saturating_add(txn_len);
                self.order.pop_front();
                if let Some(p) = self.pending.remove(&addr) {
                    txns.push(txn);
                    items.push((p.seq, p.binding));
                }
            }
            if items.is_empty() {
                break;
            }
            let xid = self.xid();
            self.send(Message::new(self.now, xid, Body::BndUpd(txns)));
            self.stats.bndupd_sent += items.len() as u64;
            self.stats.bndupd_messages_sent += 1;
            self.inflight_bindings += items.len();
            self.inflight.insert(
                xid,
                InFlight {
                    items,
                    sent_at: self.now,
                },
            );
        }
        let now = self.now;
        self.check_updreq_done(now);
    }

    fn check_updreq_done(&mut self, now: u32) {
        let Some(s) = &self.serving else {
            return;
        };
        let Some(cover) = s.cover_seq else {
            return;
        };
        let waiting = self.pending.values().any(|p| p.seq <= cover)
            || self
                .inflight
                .values()
                .any(|f| f.items.iter().any(|(seq, _)| *seq <= cover));
        if waiting {
            return;
        }
        let (xid, all, total) = (s.xid, s.all, s.total);
        self.serving = None;
        if all {
            self.owe_all = false;
        }
        self.send(Message::new(now, xid, Body::UpdDone));
        self.event(
            now,
            super::events::FailoverEventKind::SyncComplete,
            format!(
                "UPDDONE sent: {total} binding{} {}acknowledged by the partner",
                if total == 1 { "" } else { "s" },
                if all { "(all) " } else { "" }
            ),
            0,
        );
    }

    fn finish_incoming(&mut self, now: u32, xid: u32) {
        let Some(inc) = self.incoming.remove(&xid) else {
            return;
        };
        if self.conn.as_ref().is_none_or(|c| c.gen != inc.gen) {
            return;
        }
        let mut txns = inc
            .results
            .into_iter()
            .map(|(addr, r)| {
                let mut t = BindingTxn::new(addr);
                if let Some((reason, msg)) = r {
                    t.reject_reason = Some(reason.to_wire());
                    t.message = Some(msg.into_bytes());
                }
                t
            })
            .collect::<Vec<BindingTxn>>();
        // A BNDACK must fit the 2048-byte message like its BNDUPD did. Reject texts can make
        // it longer than the BNDUPD (a whole batch refused after a failed flush); they are
        // optional (draft-12 7.2), so they go first, and reasons and addresses always fit.
        let len = txns
            .iter()
            .fold(codec::HEADER_LEN, |n, t| n.saturating_add(self.txn_len(t)));
        if len > codec::MAX_MESSAGE_LEN {
            for t in &mut txns {
                t.message = None;
            }
        }
        self.send(Message::new(now, xid, Body::BndAck(txns)));
    }

    pub(super) fn on_bndupd(&mut self, now: u32, msg_time: u32, xid: u32, txns: Vec<BindingTxn>) {
        let gen = self.conn.as_ref().map_or(0, |c| c.gen);
        let mut inc = Incoming {
            gen,
            results: Vec::with_capacity(txns.len()),
            remaining: 0,
        };
        let mut to_apply = Vec::new();
        if self.sent_updreq.is_some() {
            self.resync_received += txns.len() as u64;
        }
        for (i, t) in txns.into_iter().enumerate() {
            self.stats.bndupd_received += 1;
            match binding_from_txn(&t, msg_time) {
                Ok(mut b) => {
                    // Partner's absolute times into our clock (draft-12 7.8.2 step 6).
                    b.lease_expiry = self.to_local(b.lease_expiry);
                    b.potential_expiry = self.to_local(b.potential_expiry);
                    b.cltt = self.to_local(b.cltt);
                    b.start = self.to_local(b.start);
                    inc.results.push((t.addr, None));
                    inc.remaining += 1;
                    to_apply.push((i, b));
                }
                Err(why) => {
                    self.stats.bndupd_rejected_by_us += 1;
                    inc.results.push((
                        t.addr,
                        Some((RejectReason::MissingBindingInfo, why.to_string())),
                    ));
                }
            }
        }
        let remaining = inc.remaining;
        self.incoming.insert(xid, inc);
        for (i, b) in to_apply {
            let id = self.next_update_id;
            self.next_update_id += 1;
            self.update_ids.insert(id, (gen, xid, i));
            self.actions
                .push_back(Action::ApplyBinding { id, binding: b });
        }
        if remaining == 0 {
            self.finish_incoming(now, xid);
        }
    }

    pub(super) fn on_bndack(&mut self, now: u32, xid: u32, txns: Vec<BindingTxn>) {
        let Some(f) = self.inflight.remove(&xid) else {
            return;
        };
        self.inflight_bindings = self.inflight_bindings.saturating_sub(f.items.len());
        let latency = now.saturating_sub(f.sent_at) as u64;
        for (i, (_, binding)) in f.items.into_iter().enumerate() {
            self.stats.bndack_received += 1;
            self.stats.ack_latency_sum += latency;
            // The BNDACK names every address of its BNDUPD, usually in the same order
            // (draft-12 6.3 allows any order).
            let t = match txns.get(i) {
                Some(t) if t.addr == binding.addr => Some(t),
                _ => txns.iter().find(|t| t.addr == binding.addr),
            };
            let rejected = match t {
                Some(t) => t.reject_reason.map(|r| {
                    let msg = t.message.as_deref().map(String::from_utf8_lossy);
                    (
                        RejectReason::from_wire(r),
                        msg.unwrap_or_default().into_owned(),
                    )
                }),
                // Not confirmed: treated as refused (logged; re-sent on its next change or
                // by the driver's scan) rather than as a commitment the partner never made.
                None => Some((
                    RejectReason::Misc,
                    "address missing from BNDACK".to_string(),
                )),
            };
            match rejected {
                Some((reason, message)) => {
                    self.stats.bndupd_rejected_by_partner += 1;
                    self.actions.push_back(Action::BindingRejected {
                        sent: binding,
                        reason,
                        message,
                    });
                }
                None => {
                    self.actions.push_back(Action::BindingAcked {
                        addr: binding.addr,
                        acked_potential_expiry: binding.potential_expiry,
                        sent: binding,
                    });
                }
            }
        }
        self.check_updreq_done(now);
        if self.state == ServerState::RecoverWait {
            self.pump();
            self.finish_recover_wait(now);
        }
        if self.state == ServerState::PartnerDown {
            // Pending PARTNER-DOWN -> NORMAL waits for the queue to drain.
            self.pump();
            self.react(now);
        }
    }

    pub(super) fn maybe_poolreq(&mut self, now: u32) {
        if self.cfg.role == Role::Secondary
            && self.state == ServerState::Normal
            && self.communications_ok()
            && !self.poolreq_outstanding
            && now >= self.next_poolreq_at
        {
            self.poolreq_outstanding = true;
            self.next_poolreq_at = now.saturating_add(self.cfg.pool_request_interval);
            let xid = self.xid();
            self.send(Message::new(now, xid, Body::PoolReq));
        }
    }
}

/// The wire transaction for one binding (draft-12 table 7.1-1).
pub fn txn_from_binding(b: &Binding) -> BindingTxn {
    let mut t = BindingTxn::new(b.addr);
    t.status = Some(b.status.to_wire());
    if b.status != BindingStatus::Abandoned {
        if !b.client_id.is_empty() {
            t.client_id = Some(b.client_id.clone());
        }
        if b.htype != 0 || !b.chaddr.is_empty() {
            t.chaddr = Some((b.htype, b.chaddr.clone()));
        }
    }
    if b.status == BindingStatus::Active {
        t.lease_expiry = Some(b.lease_expiry);
        t.potential_expiry = Some(b.potential_expiry.max(b.lease_expiry));
    }
    t.start_time = Some(b.start);
    if b.cltt != 0 {
        t.cltt = Some(b.cltt);
    }
    if b.flags != 0 {
        t.ip_flags = Some(b.flags);
    }
    t.request_options =
        codec::request_options_with_client_data(&b.relay_agent_info, &b.host_name, &b.vendor_class);
    t
}

/// [`txn_from_binding`], with xdhcpd's own binding flags in vendor-options when the partner
/// is xdhcpd (`xdhcpd`; [`codec::xdhcpd_opts`]); other partners never see them.
pub fn txn_for_partner(b: &Binding, xdhcpd: bool) -> BindingTxn {
    let mut t = txn_from_binding(b);
    if xdhcpd && b.status == BindingStatus::Active {
        let flags = if b.reconfiguring {
            codec::xdhcpd_opts::FLAG_RECONFIGURING
        } else {
            0
        } | if b.reconf_key {
            codec::xdhcpd_opts::FLAG_RECONF_KEY
        } else {
            0
        };
        if let Some(v) = codec::xdhcpd_opts::encode(flags) {
            t.unknown.push(codec::RawOption {
                code: codec::opt::VENDOR_OPTIONS,
                data: v,
            });
        }
    }
    t
}

/// Converts a received transaction; Err names what is missing (reject reason 3).
pub fn binding_from_txn(t: &BindingTxn, msg_time: u32) -> Result<Binding, &'static str> {
    let status = t
        .status
        .ok_or("binding-status missing")
        .and_then(|s| BindingStatus::from_wire(s).ok_or("unknown binding-status"))?;
    let (htype, chaddr) = t.chaddr.clone().unwrap_or((0, Vec::new()));
    let client_id = t.client_id.clone().unwrap_or_default();
    let (relay_agent_info, host_name, vendor_class) = t
        .request_options
        .as_deref()
        .map(codec::client_data_from_request_options)
        .unwrap_or_default();
    let mut b = Binding {
        addr: t.addr,
        status,
        client_id,
        htype,
        chaddr,
        lease_expiry: 0,
        potential_expiry: 0,
        cltt: t.cltt.unwrap_or(0),
        start: t.start_time.unwrap_or(msg_time),
        relay_agent_info,
        host_name,
        vendor_class,
        flags: t.ip_flags.unwrap_or(0),
        reconfiguring: false,
        reconf_key: false,
    };
    for o in t
        .unknown
        .iter()
        .filter(|o| o.code == codec::opt::VENDOR_OPTIONS)
    {
        if let Some(f) = codec::xdhcpd_opts::decode(&o.data)? {
            b.reconfiguring = f & codec::xdhcpd_opts::FLAG_RECONFIGURING != 0;
            b.reconf_key = f & codec::xdhcpd_opts::FLAG_RECONF_KEY != 0;
        }
    }
    if status == BindingStatus::Active {
        if !b.has_client() {
            return Err("ACTIVE binding without client");
        }
        b.lease_expiry = t
            .lease_expiry
            .ok_or("ACTIVE binding without lease-expiration-time")?;
        b.potential_expiry = t
            .potential_expiry
            .unwrap_or(b.lease_expiry)
            .max(b.lease_expiry);
    }
    Ok(b)
}
