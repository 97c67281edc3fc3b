//! The simulated TCP-like link between the two nodes.

use std::collections::VecDeque;

use super::Sim;

/// TCP-like link: ordered byte streams per direction, delays, resets, partitions.
#[derive(Default)]
pub struct Link {
    pub up: bool,
    /// Per direction (index = sender): (true delivery time, bytes).
    pub q: [VecDeque<(u32, Vec<u8>)>; 2],
    /// Sender closed: after its queue drains, the receiver sees the close.
    pub fin: [bool; 2],
    /// No connection possible before this true time.
    pub blocked_until: u32,
    pub reconnect_at: u32,
    /// Connection silently dead (host crash / partition): data is dropped, nobody is told.
    pub dead: bool,
}

impl Sim {
    pub(super) fn push_bytes(&mut self, from: usize, bytes: Vec<u8>) {
        if !self.link.up || self.link.dead || self.link.fin[from] {
            return;
        }
        // Split into up to three chunks (partial frames on the receiver).
        let mut last = self.link.q[from].back().map_or(self.t, |(at, _)| *at);
        let mut rest = &bytes[..];
        let pieces = self.rng.range(1, 3);
        for k in 0..pieces {
            if rest.is_empty() {
                break;
            }
            let n = if k + 1 == pieces {
                rest.len()
            } else {
                self.rng.range(1, rest.len() as u32) as usize
            };
            let delay = if self.rng.chance(50) {
                self.rng.range(1, 4)
            } else {
                self.rng.range(0, 1)
            };
            last = last.max(self.t + delay);
            self.link.q[from].push_back((last, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }

    /// Receiver of `from`'s FIN learns the connection is gone.
    pub(super) fn finish_close(&mut self, from: usize) {
        let other = 1 - from;
        self.link_down();
        let now = self.nodes[other].now(self.t);
        if let Some(e) = self.nodes[other].engine.as_mut() {
            e.handle_disconnected(now);
        }
        let now = self.nodes[from].now(self.t);
        if let Some(e) = self.nodes[from].engine.as_mut() {
            e.handle_disconnected(now);
        }
        self.drain(other);
        self.drain(from);
    }

    pub(super) fn link_down(&mut self) {
        self.link.up = false;
        self.link.dead = false;
        self.link.q = Default::default();
        self.link.fin = [false; 2];
        let d = self.rng.range(1, 8);
        self.link.reconnect_at = self.link.reconnect_at.max(self.t + d);
    }
}
