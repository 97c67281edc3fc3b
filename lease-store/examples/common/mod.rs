//! Shared by the lease-store examples (a folder without `main.rs`, so cargo
//! does not take it for an example of its own).

use std::net::Ipv4Addr;

use lease_store::{ClientKey, Lease, LeaseState, PoolSpec};

/// One pool (id 1) of `n` addresses from 10.0.0.0.
pub fn pool_of(n: u32) -> [PoolSpec; 1] {
    let first = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    [PoolSpec {
        id: 1,
        first: Ipv4Addr::from(first),
        last: Ipv4Addr::from(first + n - 1),
    }]
}

/// Binds `l` Active for a day from `now` to simulated client `i`, whose MAC
/// is 02:00 followed by `i`.
pub fn bind_client(l: &mut Lease, i: u32, now: u32) {
    let mac = [
        2,
        0,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ];
    l.state = LeaseState::Active;
    l.client = ClientKey::from_hw(1, &mac);
    l.htype = 1;
    l.hlen = 6;
    l.chaddr[..6].copy_from_slice(&mac);
    l.start = now;
    l.cltt = now;
    l.expiry = now + 86_400;
}
