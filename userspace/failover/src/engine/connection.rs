//! The connection to the partner: CONNECT/CONNECTACK, the STATE exchange, the partner's
//! clock offset, the contact interval, and what losing the connection undoes.

use crate::codec::{self, Body, ConnectInfo, Decoder, Message};
use crate::types::{Binding, RejectReason, Role, ServerState};

use super::state::comm_failed_state;
use super::updates::Pending;
use super::{Action, FailoverEngine};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    AwaitConnect,
    AwaitConnectAck(u32),
    Established,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) gen: u64,
    pub(super) phase: Phase,
    pub(super) decoder: Decoder,
    /// A STATE from the partner arrived on this connection: communications are "ok".
    pub(super) comm_ok: bool,
    pub(super) opened_at: u32,
    pub(super) last_rx: u32,
    pub(super) last_tx: u32,
    pub(super) partner_max_unacked: u32,
    /// The max-unacked-BNDUPD we advertised in CONNECT / CONNECTACK on this connection.
    pub(super) advertised_max_unacked: u32,
    /// vendor-class the partner sent in CONNECT / CONNECTACK (its implementation).
    pub(super) partner_vendor: Option<Vec<u8>>,
    pub(super) partner_receive_timer: u32,
    /// Partner clock minus ours, seconds.
    pub(super) skew: Option<i64>,
    pub(super) skew_samples: [Option<i32>; SKEW_WINDOW],
    pub(super) skew_next: usize,
}

pub(super) const SKEW_WINDOW: usize = 16;

/// The partner's vendor-class says it is xdhcpd.
pub(super) fn is_xdhcpd(vendor: Option<&[u8]>) -> bool {
    vendor.is_some_and(|v| v.starts_with(super::XDHCPD_VENDOR_PREFIX.as_bytes()))
}

impl FailoverEngine {
    /// The max-unacked-BNDUPD to advertise to a partner with this vendor-class and window.
    ///
    /// ISC dhcpd acknowledges BNDUPDs only once its pending acks reach half of what *we*
    /// advertised, else on a 2 s timer, while we keep at most min(ours, its window) in
    /// flight. Advertising more than twice that (our default 1000 against its usual 10) left
    /// every ack to the timer: 5 updates/s, whatever the client rate. So a partner that is
    /// not xdhcpd gets exactly what we keep in flight (it acknowledges at half our window,
    /// and we can send on meanwhile). An xdhcpd partner acknowledges at once: ours.
    pub(super) fn max_unacked_for(&self, vendor: Option<&[u8]>, partner_window: u32) -> u32 {
        if is_xdhcpd(vendor) {
            self.cfg.max_unacked_bndupd
        } else {
            self.cfg.max_unacked_bndupd.min(partner_window.max(1))
        }
    }

    pub(super) fn send_interval(&self, c: &Conn) -> u32 {
        // tSend: our poll interval, and never more than a third of the partner's receive timer.
        let partner = if c.partner_receive_timer > 0 {
            (c.partner_receive_timer / 3).max(1)
        } else {
            self.cfg.poll_interval
        };
        self.cfg.poll_interval.min(partner)
    }

    /// Partner clock minus ours as currently estimated (0 when not connected).
    pub fn partner_clock_offset(&self) -> i64 {
        self.conn.as_ref().and_then(|c| c.skew).unwrap_or(0)
    }

    /// Converts a partner timestamp to our clock; 0 ("unset") stays 0.
    pub(super) fn to_local(&self, t: u32) -> u32 {
        if t == 0 {
            return 0;
        }
        (t as i64 - self.partner_clock_offset()).clamp(1, u32::MAX as i64) as u32
    }

    pub(super) fn close(&mut self, now: u32, reason: RejectReason, message: &str) {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Established)
        {
            self.send_body(
                now,
                Body::Disconnect {
                    reject_reason: reason.to_wire(),
                    message: Some(message.as_bytes().to_vec()),
                },
            );
        }
        self.actions.push_back(Action::Close {
            reason,
            message: message.to_string(),
        });
        self.lose_connection(now, "connection dropped");
    }

    pub(super) fn lose_connection(&mut self, now: u32, why: &'static str) {
        let was_ok = self.communications_ok();
        self.conn = None;
        // Unacknowledged updates go back to the queue: they are re-sent on the next connection.
        let mut back: Vec<(u64, Binding)> =
            self.inflight.drain().flat_map(|(_, f)| f.items).collect();
        self.inflight_bindings = 0;
        back.sort_by_key(|(seq, _)| *seq);
        for (seq, binding) in back.into_iter().rev() {
            let addr = binding.addr;
            match self.pending.get_mut(&addr) {
                Some(p) => p.seq = p.seq.min(seq),
                None => {
                    self.pending.insert(addr, Pending { seq, binding });
                    self.order.push_front(addr);
                }
            }
        }
        // Requests and answers do not survive a connection (draft-12 8.6).
        self.incoming.clear();
        self.update_ids.clear();
        self.serving = None;
        self.sent_updreq = None;
        self.pool_requests.clear();
        self.poolreq_outstanding = false;
        if was_ok {
            self.event(
                now,
                super::events::FailoverEventKind::HeartbeatsDown,
                format!("{why} (in {})", self.state),
                0,
            );
            self.persist.last_contact = now;
            let to = comm_failed_state(self.state);
            if to != self.state {
                self.set_state(now, to, why);
            } else {
                self.emit_persist();
            }
        }
    }

    fn connect_reject(&mut self, now: u32, xid: u32, reason: RejectReason, why: &str, tls: bool) {
        let info = ConnectInfo {
            relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
            protocol_version: Some(codec::PROTOCOL_VERSION),
            tls_reply: tls.then_some(0),
            reject_reason: Some(reason.to_wire()),
            message: Some(why.as_bytes().to_vec()),
            ..ConnectInfo::default()
        };
        self.send(Message::new(now, xid, Body::ConnectAck(info)));
        self.actions.push_back(Action::Close {
            reason,
            message: why.to_string(),
        });
        self.lose_connection(now, "CONNECT refused");
    }

    pub(super) fn on_connect(
        &mut self,
        now: u32,
        time: u32,
        xid: u32,
        phase: Phase,
        info: ConnectInfo,
    ) {
        let tls = info.tls_request.is_some();
        if self.cfg.role == Role::Primary {
            self.stats.protocol_errors += 1;
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidPartner,
                "CONNECT sent to the primary",
                tls,
            );
        }
        if phase != Phase::AwaitConnect {
            return self.connect_reject(
                now,
                xid,
                RejectReason::DuplicateConnection,
                "duplicate CONNECT",
                tls,
            );
        }
        if info.relationship_name.as_deref() != Some(self.cfg.relationship_name.as_bytes()) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidPartner,
                "unknown relationship name",
                tls,
            );
        }
        if info.protocol_version != Some(codec::PROTOCOL_VERSION) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::VersionMismatch,
                "protocol version mismatch",
                tls,
            );
        }
        if info.tls_request == Some(2) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::TlsUnsupported,
                "TLS not supported",
                tls,
            );
        }
        if time.abs_diff(now) > self.cfg.max_time_skew {
            return self.connect_reject(
                now,
                xid,
                RejectReason::TimeMismatch,
                "time offset too large",
                tls,
            );
        }
        let Some(mclt) = info.mclt.filter(|&m| m > 0) else {
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidMclt,
                "missing or zero MCLT",
                tls,
            );
        };
        let (mclt_min, mclt_max) = self.cfg.partner_mclt_bounds();
        if mclt < mclt_min || mclt > mclt_max {
            // The primary's MCLT is adopted (draft-12 7.8.2), but only within our bounds: a
            // shrunk MCLT would let either side reuse a partner's address too early.
            self.stats.protocol_errors += 1;
            let why = format!(
                "MCLT {mclt} s outside this server's bounds {mclt_min}..={mclt_max} s \
                 (partner-mclt-min, partner-mclt-max)"
            );
            self.actions
                .push_back(Action::Log(format!("failover: refused CONNECT: {why}")));
            return self.connect_reject(now, xid, RejectReason::InvalidMclt, &why, tls);
        }
        let hba: Option<[u8; 32]> = info.hba.as_deref().and_then(|h| h.try_into().ok());
        let Some(hba) = hba else {
            return self.connect_reject(now, xid, RejectReason::HbaConflict, "invalid HBA", tls);
        };
        let policy_before = self.policy();
        // Draft-12 7.8.2 step 7: the secondary runs with (and stores) the primary's MCLT.
        self.mclt = mclt;
        self.hba = hba;
        if self.persist.mclt != mclt {
            self.persist.mclt = mclt;
            self.emit_persist();
        }
        let partner_window = info.max_unacked.unwrap_or(1).max(1);
        let advertised = self.max_unacked_for(info.vendor_class.as_deref(), partner_window);
        if let Some(c) = self.conn.as_mut() {
            c.phase = Phase::Established;
            c.partner_max_unacked = partner_window;
            c.advertised_max_unacked = advertised;
            c.partner_receive_timer = info.receive_timer.unwrap_or(0);
            c.partner_vendor = info.vendor_class.clone();
        }
        self.learn_partner_vendor(info.vendor_class);
        let ack = ConnectInfo {
            relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
            max_unacked: Some(advertised),
            receive_timer: Some(self.cfg.poll_timeout),
            vendor_class: Some(self.cfg.vendor_class.as_bytes().to_vec()),
            protocol_version: Some(codec::PROTOCOL_VERSION),
            tls_reply: tls.then_some(0),
            ..ConnectInfo::default()
        };
        self.send(Message::new(now, xid, Body::ConnectAck(ack)));
        self.send_state(now);
        if self.policy() != policy_before {
            self.actions.push_back(Action::PolicyChanged(self.policy()));
        }
    }

    pub(super) fn on_connectack(
        &mut self,
        now: u32,
        time: u32,
        xid: u32,
        phase: Phase,
        info: ConnectInfo,
    ) {
        if self.cfg.role == Role::Secondary || phase != Phase::AwaitConnectAck(xid) {
            // Draft-12 7.9.2: a CONNECTACK not matching our CONNECT is ignored.
            return;
        }
        if let Some(r) = info.reject_reason {
            let text = info
                .message
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            self.actions.push_back(Action::Log(format!(
                "failover: partner refused CONNECT: reason {r}: {text}"
            )));
            self.actions.push_back(Action::Close {
                reason: RejectReason::from_wire(r),
                message: text,
            });
            return self.lose_connection(now, "CONNECT refused by partner");
        }
        if info.protocol_version != Some(codec::PROTOCOL_VERSION) {
            return self.close(
                now,
                RejectReason::VersionMismatch,
                "protocol version mismatch",
            );
        }
        if time.abs_diff(now) > self.cfg.max_time_skew {
            return self.close(now, RejectReason::TimeMismatch, "time offset too large");
        }
        let partner_window = info.max_unacked.unwrap_or(1).max(1);
        let want = self.max_unacked_for(info.vendor_class.as_deref(), partner_window);
        let xdhcpd = is_xdhcpd(info.vendor_class.as_deref());
        let mut advertised = want;
        if let Some(c) = self.conn.as_mut() {
            c.phase = Phase::Established;
            c.partner_max_unacked = partner_window;
            c.partner_receive_timer = info.receive_timer.unwrap_or(0);
            c.partner_vendor = info.vendor_class.clone();
            advertised = c.advertised_max_unacked;
        }
        let vendor = info
            .vendor_class
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        self.learn_partner_vendor(info.vendor_class);
        // Remembered for the next CONNECT (also across restarts).
        let learnt = if xdhcpd { 0 } else { want };
        if self.persist.connect_max_unacked != learnt {
            self.persist.connect_max_unacked = learnt;
            self.emit_persist();
        }
        if !xdhcpd && advertised / 2 > want {
            // Our CONNECT went out before the partner said who it is, and what it advertised
            // would leave its acks to its timer (see `max_unacked_for`): start again.
            self.actions.push_back(Action::Log(format!(
                "failover: partner {} acknowledges binding updates when half of our \
                 max-unacked-updates ({advertised}) are pending, but we keep at most {want} in \
                 flight: reconnecting to advertise {want}",
                vendor.as_deref().unwrap_or("without vendor-class")
            )));
            return self.close(
                now,
                RejectReason::Misc,
                &format!("reconnecting to advertise max-unacked-updates {want}"),
            );
        }
        self.send_state(now);
    }

    /// Records the partner's vendor-class and warns (once per version) when it is not ours:
    /// a pair should run the same software (ISC dhcpd as partner is the known exception).
    fn learn_partner_vendor(&mut self, vendor: Option<Vec<u8>>) {
        let Some(v) = vendor else {
            self.known_partner_vendor = None;
            return;
        };
        if v != self.cfg.vendor_class.as_bytes() && self.warned_vendor.as_ref() != Some(&v) {
            self.warned_vendor = Some(v.clone());
            let partner = String::from_utf8_lossy(&v).into_owned();
            let now = self.now;
            self.event(
                now,
                super::events::FailoverEventKind::VersionMismatch,
                format!("we run {}, the partner {partner}", self.cfg.vendor_class),
                0,
            );
            self.actions.push_back(Action::VersionMismatch {
                ours: self.cfg.vendor_class.clone(),
                partner,
            });
        }
        self.known_partner_vendor = Some(v);
    }

    pub(super) fn send_state(&mut self, now: u32) {
        if !self
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Established)
        {
            return;
        }
        let (state, flags, since) = if self.state == ServerState::Startup {
            // Draft-12 9.3.1: STARTUP flag with the previously recorded state.
            (self.prev_state, codec::SERVER_FLAG_STARTUP, self.prev_since)
        } else {
            (self.state, 0, self.state_since)
        };
        self.send_body(
            now,
            Body::State {
                state: state.to_wire(),
                flags,
                start_time: since,
            },
        );
    }

    pub(super) fn on_state(&mut self, now: u32, state: u8, flags: u8, start_time: u32) {
        let Some(ps) = ServerState::from_wire(state) else {
            self.actions.push_back(Action::Log(format!(
                "failover: partner sent unknown state {state}; ignored"
            )));
            return;
        };
        let startup = flags & codec::SERVER_FLAG_STARTUP != 0 || ps == ServerState::Startup;
        let changed = self.partner != Some(ps) || self.partner_startup != startup;
        let recovering = |s: Option<ServerState>| {
            matches!(
                s,
                Some(ServerState::Recover | ServerState::RecoverWait | ServerState::RecoverDone)
            )
        };
        let was_recovering = recovering(self.partner) && !self.partner_startup;
        let first_state = !self.communications_ok();
        let start_time = self.to_local(start_time);
        self.partner = Some(ps);
        self.partner_since = start_time;
        self.partner_startup = startup;
        self.persist.partner_state = Some(ps);
        self.persist.partner_state_since = start_time;
        self.persist.last_contact = now;
        let first = !self.communications_ok();
        if let Some(c) = self.conn.as_mut() {
            c.comm_ok = true;
        }
        if first {
            self.comm_up_at = now;
            self.failback_hold_noted = false;
            self.event(
                now,
                super::events::FailoverEventKind::HeartbeatsUp,
                format!(
                    "partner ({}) in {ps}; we are {}",
                    self.known_partner_vendor
                        .as_deref()
                        .map_or("version not sent".into(), String::from_utf8_lossy),
                    self.state
                ),
                0,
            );
            self.persist.ever_communicated = true;
            if self.state == ServerState::Paused || self.state == ServerState::Shutdown {
                self.send_state(now);
            }
            // Re-send whatever the partner has not acknowledged (the queue may have been lost
            // in a restart); draft-12 9.8.1.
            self.actions.push_back(Action::SendBindings { all: false });
            if self.cfg.role == Role::Secondary {
                self.next_poolreq_at = now;
            }
        }
        self.emit_persist();
        if self.state == ServerState::PartnerDown
            && !startup
            && recovering(Some(ps))
            && (first_state || !was_recovering)
        {
            self.event(
                now,
                super::events::FailoverEventKind::FailbackInProgress,
                format!("partner back in {ps}: it takes our bindings, then both go NORMAL"),
                0,
            );
        }
        if changed {
            self.actions.push_back(Action::StateChanged {
                from: self.state,
                own: self.state,
                partner: Some(ps),
                at: now,
                reason: "partner state",
            });
        }
        if self.state == ServerState::Shutdown && ps == ServerState::PartnerDown {
            // Draft-12 9.14.2: restart in RECOVER.
            self.persist.resume_state = ServerState::Recover;
            self.emit_persist();
        }
        if self.state == ServerState::Startup {
            self.leave_startup(now);
        }
        self.react(now);
    }
}
