//! The safety invariants, checked after every simulation step.

use lease_store::{Lease, LeaseState};

use super::{addr, client_key, Sim, GRACE, MAX_SKEW, POOL, T0};

impl Sim {
    pub fn check_invariants(&self) {
        let t = self.t;
        // (1a) client view: no two clients hold the same address at once.
        let mut holder: [Option<usize>; POOL] = [None; POOL];
        for (c, cl) in self.clients.iter().enumerate() {
            if let Some((k, end, ..)) = cl.lease {
                if end > t {
                    if let Some(o) = holder[k] {
                        panic!(
                            "invariant 1 violated at {}: address {} held by clients {o} and {c}\n{}",
                            t - T0,
                            addr(k),
                            self.log_tail()
                        );
                    }
                    holder[k] = Some(c);
                }
            }
        }
        // (1b) tables: no address ACTIVE and unexpired for two different clients.
        for k in 0..POOL {
            let a = self.nodes[0].lease(k);
            let b = self.nodes[1].lease(k);
            let live = |n: usize, l: &Lease| {
                l.state == LeaseState::Active && l.expiry > self.nodes[n].now(t) + GRACE
            };
            if live(0, a) && live(1, b) && a.client != b.client {
                panic!(
                    "invariant 1 (tables) violated at {}: {} is {} on node0 and {} on node1\n{}",
                    t - T0,
                    addr(k),
                    a.client,
                    b.client,
                    self.log_tail()
                );
            }
        }
        // (2) every lease held by a client is on at least one server's durable table.
        for (c, cl) in self.clients.iter().enumerate() {
            if let Some((k, end, ..)) = cl.lease {
                if end <= t {
                    continue;
                }
                let known = (0..2).any(|n| {
                    let l = self.nodes[n].lease(k);
                    l.state == LeaseState::Active
                        && l.client == client_key(&cl.key)
                        && (l.is_permanent()
                            || (l.expiry as i64 - self.nodes[n].offset) + 2 * MAX_SKEW
                                >= end as i64)
                });
                if !known {
                    panic!(
                        "invariant 2 violated at {}: client {c}'s lease on {} (end {}) unknown to both servers\nnode0 {:?}\nnode1 {:?}\n{}",
                        t - T0,
                        addr(k),
                        end - T0,
                        self.nodes[0].lease(k),
                        self.nodes[1].lease(k),
                        self.log_tail()
                    );
                }
            }
        }
    }
}
