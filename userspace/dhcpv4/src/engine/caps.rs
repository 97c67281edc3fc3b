//! The engine's side of the lease caps (`crate::caps`): before a client that holds no
//! address takes one, a unit is reserved under its circuit's and remote-id's caps.

use lease_store::{ClientKey, LeaseState};

use crate::caps::{link_of_subnet, CapKind};
use crate::stats::EngineStats;

use super::Engine;

impl Engine {
    /// Admits a new holder on the link of subnet `subnet` under the lease caps: None when
    /// admitted (a reservation is held until the message is done) or when no cap applies;
    /// else the full cap, counted. A client that already holds an address (Offered or
    /// Active record) is never refused: it is counted already.
    pub(super) fn cap_admit(
        &mut self,
        subnet: usize,
        key: &ClientKey,
        ri: &[u8],
    ) -> Option<CapKind> {
        let caps = self.shared.caps.as_ref()?;
        if ri.is_empty() || !caps.active() {
            return None;
        }
        if let Some((_, l)) = self.shared.table.find_client(key) {
            if matches!(l.state, LeaseState::Offered | LeaseState::Active) {
                return None;
            }
        }
        let link = link_of_subnet(&self.shared.config, subnet);
        match caps.reserve(link, ri) {
            Ok(r) => {
                self.cap_res = r;
                None
            }
            Err(kind) => {
                EngineStats::inc(match kind {
                    CapKind::Circuit => &self.stats.lease_cap_circuit_refused,
                    CapKind::RemoteId => &self.stats.lease_cap_remote_id_refused,
                });
                Some(kind)
            }
        }
    }

    /// Gives back the message's reservation (its address, if taken, is counted by then).
    pub(super) fn cap_release(&mut self) {
        if let Some(caps) = &self.shared.caps {
            caps.release(std::mem::take(&mut self.cap_res));
        }
    }
}
