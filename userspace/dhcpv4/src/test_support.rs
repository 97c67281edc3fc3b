//! Shared by the engine's test modules: an engine over a real lease table in
//! a temporary file, and a raw client request builder.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseTable, OpenOptions, PoolSpec};
use xdhcpd_failover::PolicyCell;

use super::engine::{Engine, EngineShared, RegistrationView};
use super::stats::EngineStats;
use super::wire::{MAGIC_COOKIE, OP_BOOTREQUEST};

/// An engine on configuration `text` with a fresh lease table opened at
/// `now`; with `policy`, the engine obeys that failover policy.
pub(crate) fn engine_on(
    text: &str,
    server: Ipv4Addr,
    now: u32,
    policy: Option<Arc<PolicyCell>>,
) -> (tempfile::TempDir, Engine, Arc<LeaseTable>) {
    engine_with(text, server, now, policy, None)
}

/// [`engine_on`] with a registration view (live registrations).
pub(crate) fn engine_with(
    text: &str,
    server: Ipv4Addr,
    now: u32,
    policy: Option<Arc<PolicyCell>>,
    registrations: Option<Arc<dyn RegistrationView>>,
) -> (tempfile::TempDir, Engine, Arc<LeaseTable>) {
    let cfg = Arc::new(xdhcpd_config::parse(text, "test.toml").expect("test config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("leases.db"),
        &pools,
        &OpenOptions {
            now,
            ..OpenOptions::default()
        },
    )
    .expect("open lease table");
    let table = Arc::new(table);
    let mut shared = EngineShared::new(cfg, table.clone(), server);
    if let Some(cell) = policy {
        shared = shared.with_failover(cell);
    }
    if let Some(view) = registrations {
        shared = shared.with_registrations(view);
    }
    let engine = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    (dir, engine, table)
}

/// A BOOTREQUEST from client `mac_last` (chaddr 02:00:00:00:00:mac_last)
/// with the given ciaddr, giaddr and options.
pub(crate) fn request(
    mac_last: u8,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    opts: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&[0xde, 0xad, 0, mac_last]);
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&giaddr.octets());
    b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, mac_last]);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(255);
    b
}
