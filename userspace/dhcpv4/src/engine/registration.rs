//! Registrations as the engine sees them: a client registered by MAC or client identifier
//! is KNOWN and a member of its group (class); its fixed address is served to it; its
//! host-name, next-server, boot file and options go in the reply with the highest
//! precedence (host > subnet).
//!
//! The engine does no IO: it asks a [`RegistrationView`] (the daemon's adapter over the
//! `xdhcpd-registrations` index) once per message and copies what it needs into the
//! engine's own fixed-size scratch ([`RegHit`]): no lock, no allocation.
//!
//! Reservations that move: a registered client with a fixed address in its subnet that
//! asks for another address (RENEWING, REBINDING, INIT-REBOOT, SELECTING) is NAKed
//! ("reservation moved"), so it comes back with a DISCOVER and is offered its fixed
//! address. A client whose registration was removed gets no answer under `deny-unknown`
//! (its lease runs out); elsewhere it keeps its lease like any client. (FORCERENEW, to move
//! it at once, comes with the reconfigure work.)

use std::net::Ipv4Addr;

use lease_store::ClientKey;
use xdhcpd_config::Subnet;

use lease_store::LeaseState;

use crate::stats::EngineStats;
use crate::wire::{Message, Summary};

use super::binding::grant;
use super::Engine;

/// One registration, borrowed from the view for the duration of a lookup.
#[derive(Clone, Copy, Debug)]
pub struct Registered<'a> {
    /// The group (a class name).
    pub group: &'a str,
    /// The address this client always gets (when in its subnet).
    pub fixed_address: Option<Ipv4Addr>,
    /// `siaddr`.
    pub next_server: Option<Ipv4Addr>,
    /// The BOOTP `file` field (at most 127 bytes are used).
    pub boot_file: Option<&'a [u8]>,
    /// Options as DHCP TLVs (`code, len, value`...), host-name (12) among them; at most
    /// [`REG_OPTIONS_MAX`] bytes are used.
    pub options: &'a [u8],
}

/// Room for a registration's options in the engine's scratch.
pub const REG_OPTIONS_MAX: usize = 255;
/// Room for a group name.
pub const REG_GROUP_MAX: usize = 64;

/// What the engine asks about registrations. Implementations must not lock globally or
/// allocate per call: they run on every packet.
pub trait RegistrationView: Send + Sync {
    /// Calls `visit` with the registration `key` names (a client id key or a hardware
    /// key), if any; returns whether there was one.
    fn find(&self, key: &ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool;
    /// Whether `addr` is the fixed address of a registration that is neither `key`'s nor
    /// `hw`'s.
    fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey, hw: &ClientKey) -> bool;
}

/// The current message's registration, copied out of the view.
pub(super) struct RegHit {
    known: bool,
    /// The message's hardware key (htype, chaddr), looked up when the client id is not
    /// registered.
    hw: ClientKey,
    fixed: Option<Ipv4Addr>,
    next_server: Option<Ipv4Addr>,
    file: [u8; 128],
    file_len: u8,
    group: [u8; REG_GROUP_MAX],
    group_len: u8,
    opts: [u8; REG_OPTIONS_MAX],
    opts_len: u8,
}

impl Default for RegHit {
    fn default() -> Self {
        RegHit {
            known: false,
            hw: ClientKey::NONE,
            fixed: None,
            next_server: None,
            file: [0; 128],
            file_len: 0,
            group: [0; REG_GROUP_MAX],
            group_len: 0,
            opts: [0; REG_OPTIONS_MAX],
            opts_len: 0,
        }
    }
}

impl RegHit {
    fn fill(&mut self, r: &Registered<'_>) {
        self.known = true;
        self.fixed = r.fixed_address;
        self.next_server = r.next_server;
        let f = r.boot_file.unwrap_or(&[]);
        let n = f.len().min(127);
        self.file[..n].copy_from_slice(&f[..n]);
        self.file_len = n as u8;
        let g = r.group.as_bytes();
        let n = g.len().min(REG_GROUP_MAX);
        self.group[..n].copy_from_slice(&g[..n]);
        self.group_len = n as u8;
        // Whole TLVs only.
        let mut n = 0;
        while n + 2 <= r.options.len() && n < REG_OPTIONS_MAX {
            let end = n + 2 + r.options[n + 1] as usize;
            if end > r.options.len() || end > REG_OPTIONS_MAX {
                break;
            }
            n = end;
        }
        self.opts[..n].copy_from_slice(&r.options[..n]);
        self.opts_len = n as u8;
    }
}

impl Engine {
    /// Looks the message's client up: by `key` (client id if sent, else hardware), then by
    /// its hardware address. Once per message, before dispatch.
    pub(super) fn lookup_registration(&mut self, msg: &Message<'_>, key: &ClientKey) {
        let reg = &mut self.reg;
        reg.known = false;
        reg.hw = ClientKey::from_hw(msg.htype(), msg.chaddr());
        let Some(view) = self.shared.registrations.as_deref() else {
            return;
        };
        let mut visit = |r: &Registered<'_>| reg.fill(r);
        if !view.find(key, &mut visit) && *key != reg.hw {
            let hw = reg.hw;
            let mut visit = |r: &Registered<'_>| reg.fill(r);
            view.find(&hw, &mut visit);
        }
    }

    /// Whether the message's client is registered (KNOWN). The one place that decides it
    /// (class matching and `deny-unknown` both ask here).
    #[inline]
    pub fn is_known(&self) -> bool {
        self.reg.known
    }

    /// The registration group of the message's client (its class), if registered.
    pub fn registration_group(&self) -> Option<&str> {
        if !self.reg.known {
            return None;
        }
        std::str::from_utf8(&self.reg.group[..self.reg.group_len as usize]).ok()
    }

    /// `deny-unknown` on `subnet` and the client is not registered: drop, counted.
    #[inline]
    pub(super) fn denied_unknown(&self, subnet: &Subnet) -> bool {
        if subnet.deny_unknown && !self.is_known() {
            EngineStats::inc(&self.stats.unknown_denied);
            return true;
        }
        false
    }

    /// The client's fixed address from its registration, if it lies in `subnet`.
    #[inline]
    pub(super) fn registered_fixed(&self, subnet: &Subnet) -> Option<Ipv4Addr> {
        self.reg
            .fixed
            .filter(|a| self.reg.known && subnet.net.contains(*a))
    }

    /// OFFER of the client's registered fixed address (`registered_fixed` is Some): its
    /// record if it lies in a pool, else a lease without a record (like a configured
    /// reservation). Held by another client (bound before the registration): counted, and
    /// an address from the pool instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_fixed(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
        desired: u32,
        hold: u32,
    ) -> Option<(Ipv4Addr, u32)> {
        let ip = self.reg.fixed?;
        let granted = match self.shared.table.slot_of(ip) {
            Some(slot) => self.take(slot, key, msg, LeaseState::Offered, now, desired, hold),
            None => Some(grant(self.pol.as_ref(), now, desired, 0).0),
        };
        match granted {
            Some(g) => Some((ip, g)),
            None => {
                EngineStats::inc(&self.stats.registration_fixed_busy);
                self.choose_address(now, msg, sum, key, subnet_index, desired, hold)
            }
        }
    }

    /// Whether `addr` is some other client's registered fixed address.
    #[inline]
    pub(super) fn registered_for_other(&self, addr: Ipv4Addr, key: &ClientKey) -> bool {
        self.shared
            .registrations
            .as_deref()
            .is_some_and(|v| v.reserved_for_other(addr, key, &self.reg.hw))
    }

    /// The registration's value of option `code` (host precedence).
    #[inline]
    pub(super) fn host_option(&self, code: u8) -> Option<&[u8]> {
        if !self.reg.known {
            return None;
        }
        let b = &self.reg.opts[..self.reg.opts_len as usize];
        let mut i = 0;
        while i + 2 <= b.len() {
            let end = i + 2 + b[i + 1] as usize;
            if b[i] == code {
                return b.get(i + 2..end);
            }
            i = end;
        }
        None
    }

    /// The codes of the registration's options, in order (`[0; 0]` when unknown).
    pub(super) fn host_option_codes(&self) -> impl Iterator<Item = u8> + '_ {
        let b = &self.reg.opts[..if self.reg.known {
            self.reg.opts_len as usize
        } else {
            0
        }];
        let mut i = 0;
        std::iter::from_fn(move || {
            if i + 2 > b.len() {
                return None;
            }
            let c = b[i];
            i += 2 + b[i + 1] as usize;
            Some(c)
        })
    }

    /// The registration's `siaddr`, over the subnet's.
    #[inline]
    pub(super) fn host_next_server(&self) -> Option<Ipv4Addr> {
        self.reg.next_server.filter(|_| self.reg.known)
    }

    /// The registration's boot file, over the subnet's.
    #[inline]
    pub(super) fn host_boot_file(&self) -> Option<&[u8]> {
        (self.reg.known && self.reg.file_len > 0)
            .then(|| &self.reg.file[..self.reg.file_len as usize])
    }
}
