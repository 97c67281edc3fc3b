//! Failover's per-address records: the one place that decides what a lease record means to
//! the partner ([`record`]) and what the partner's messages do to it ([`sync`]), over any
//! [`BindingStore`]. The daemon implements the store over its memory-mapped lease table, the
//! simulation over an in-memory table of the same records, so the simulation tests the rules
//! the daemon runs.

pub mod record;
pub mod sync;

pub use record::{
    allocation_last_end, allocation_status, binding_change_time, binding_for_change, change_time,
    lease_to_binding, lease_to_local, partner_lacks, release, set_reconfiguring, status_of,
    stop_reconfiguring, unacked, worth_sending_all, write_binding,
};
pub use record::{lease_to_binding_var, write_binding_var};
pub use sync::{is_takeover, BindingStore, BindingSync, StoreRules};
