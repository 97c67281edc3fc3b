//! Registrations in the daemon: the store opened at start, the view the engines read
//! (an adapter from `xdhcpd-registrations`' index to `xdhcpd-dhcpv4`'s
//! [`RegistrationView`]), and the control requests (`ctl.rs`).

pub mod ctl;
pub mod postgres;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use lease_store::ClientKey;
use xdhcpd_dhcpv4::{Registered, RegistrationView};
use xdhcpd_registrations::{Index, Store};

/// The engine's view over the registration index: one lock-free lookup per call, no
/// allocation.
pub struct IndexView(pub Arc<Index>);

impl RegistrationView for IndexView {
    #[inline]
    fn generation(&self) -> u64 {
        self.0.generation()
    }

    #[inline]
    fn find(&self, key: &ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool {
        // Registrations by MAC only: a client id cannot match (one atomic load, no lookup).
        if key.kind() == lease_store::KeyKind::ClientId && !self.0.has_client_ids() {
            return false;
        }
        self.0
            .with(key, |e| {
                visit(&Registered {
                    group: &e.group,
                    fixed_address: e.reg.fixed_address,
                    next_server: e.reg.next_server,
                    boot_file: e.reg.boot_file.as_deref().map(str::as_bytes),
                    options: &e.tlv,
                })
            })
            .is_some()
    }

    #[inline]
    fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey, hw: &ClientKey) -> bool {
        self.0.reserved_for_other(addr, key) && self.0.reserved_for_other(addr, hw)
    }
}

/// The store the control thread changes; the workers read its index.
pub type SharedStore = Arc<Mutex<Store>>;

/// Opens the registration store at `path` (creating it), logging what it found.
pub fn open(path: &Path) -> anyhow::Result<SharedStore> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let t = std::time::Instant::now();
    let (store, rep) = Store::open(path).context("opening the registration store")?;
    if rep.torn_bytes > 0 {
        tracing::warn!(
            "registrations {}: discarded a torn last change ({} bytes; it was never acknowledged)",
            path.display(),
            rep.torn_bytes
        );
    }
    if rep.stale_log {
        tracing::warn!(
            "registrations {}: dropped a log older than the snapshot (left by an interrupted compaction)",
            path.display()
        );
    }
    tracing::info!(
        "registrations {}: {} loaded ({} logged changes replayed) in {} ms",
        path.display(),
        rep.registrations,
        rep.log_records,
        t.elapsed().as_millis()
    );
    Ok(Arc::new(Mutex::new(store)))
}
