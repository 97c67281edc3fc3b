//! The in-memory index the workers read: client key -> registration, fixed address ->
//! registration.
//!
//! Two `papaya` concurrent hash maps (lock-free reads; memory reclaimed by epochs through
//! `seize`). A lookup pins the thread's epoch, hashes a fixed-size key and follows one
//! pointer: no lock, no allocation. Each change is one insert or remove per key, so a
//! single add / modify / remove costs O(1) whatever the number of registrations, and a
//! reader sees a client's old registration or its new one, never none while it is being
//! modified (the new entry replaces the old in place; stale keys go after).
//!
//! One writer at a time (the [`crate::Store`] is behind a mutex in the daemon).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use lease_store::ClientKey;

use crate::record::Registration;

type Hasher = foldhash::fast::RandomState;

/// One registration as the workers read it, stored inline in the map's node (a hit
/// touches the node and nothing else but the options, when there are any).
#[derive(Clone, Debug)]
pub struct Entry {
    /// The record.
    pub reg: Registration,
    /// Its group, interned: every registration of a group shares these bytes (hot in
    /// cache).
    pub group: Arc<str>,
    /// Its options (host-name first) as DHCP TLVs.
    pub tlv: Box<[u8]>,
}

/// Who holds a fixed address: the keys of its registration.
#[derive(Clone, Copy, Debug)]
struct Owner([Option<ClientKey>; 2]);

impl Owner {
    fn of(reg: &Registration) -> Owner {
        let mut o = [None, None];
        for (slot, k) in o.iter_mut().zip(reg.keys()) {
            *slot = Some(k);
        }
        Owner(o)
    }

    fn has_key(&self, key: &ClientKey) -> bool {
        self.0.iter().any(|k| k.as_ref() == Some(key))
    }

    fn first(&self) -> Option<ClientKey> {
        self.0[0]
    }
}

impl Entry {
    /// Builds the worker's form of `reg` (`group`: its interned group name).
    pub fn new(reg: Registration, group: Arc<str>) -> Entry {
        let tlv = reg.encode_options().into_boxed_slice();
        Entry { reg, group, tlv }
    }

    /// Whether `key` names this registration (its keys are rebuilt from the record: a few
    /// byte copies, and 70 bytes less per registration than keeping them).
    #[inline]
    pub fn has_key(&self, key: &ClientKey) -> bool {
        self.reg.keys().any(|k| k == *key)
    }

    /// The first key (client id, else MAC): where the registration is counted.
    fn first_key(&self) -> Option<ClientKey> {
        self.reg.keys().next()
    }
}

/// Told of every change of an [`Index`], after the index holds it (in the changing thread:
/// writers are the store's, serialized by its lock). The daemon keeps the XDP program's map
/// of known hardware addresses in step with it.
pub trait IndexWatch: Send + Sync {
    /// `new` was put, replacing `replaced` (registrations that shared a key with it).
    fn put(&self, new: &Registration, replaced: &[Registration]);
    /// `old` was removed.
    fn removed(&self, old: &Registration);
}

/// Client key / fixed address -> registration.
pub struct Index {
    by_key: papaya::HashMap<ClientKey, Entry, Hasher>,
    by_addr: papaya::HashMap<Ipv4Addr, Owner, Hasher>,
    /// Interned group names (the writer's; few).
    groups: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>,
    /// Client-id keys in `by_key`: while 0 (registrations by MAC only, the carrier case), a
    /// client-id lookup is answered without touching the map.
    client_ids: AtomicUsize,
    /// Told of every change, in the order installed (`set_watch`): the XDP map of known
    /// MACs, the reconfigure trigger. Read by the writer only (not the packet path).
    watch: std::sync::RwLock<Vec<Arc<dyn IndexWatch>>>,
    /// Entries in `by_addr`: while 0 (no fixed addresses), "is this address reserved for
    /// another client?" is answered without touching the map.
    fixed_addrs: AtomicUsize,
    /// Change generation: raised after every change has been made visible (put, remove,
    /// replace), so a reader that read it before a lookup and finds it unchanged later
    /// knows that lookup's answer still holds (the workers' per-client caches,
    /// `xdhcpd-dhcpv4`'s `engine/registration.rs`).
    generation: AtomicU64,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    /// Empty.
    pub fn new() -> Index {
        Index {
            by_key: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            by_addr: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            client_ids: AtomicUsize::new(0),
            fixed_addrs: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            groups: Default::default(),
            watch: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Adds a change watcher (told after the ones installed before it).
    pub fn set_watch(&self, w: Arc<dyn IndexWatch>) {
        match self.watch.write() {
            Ok(mut v) => v.push(w),
            Err(p) => p.into_inner().push(w),
        }
    }

    fn watchers(&self) -> Vec<Arc<dyn IndexWatch>> {
        match self.watch.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn intern(&self, g: &str) -> Arc<str> {
        let mut m = match self.groups.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(g.to_string())
            .or_insert_with(|| Arc::from(g))
            .clone()
    }

    /// Whether any registration has a client id (else client-id lookups can be skipped).
    #[inline]
    pub fn has_client_ids(&self) -> bool {
        self.client_ids.load(Ordering::Relaxed) > 0
    }

    /// The change generation: it differs from an earlier value read with this method iff
    /// some change was made since (Acquire: a reader that sees a raised value also sees the
    /// change in the maps). Read it before a lookup whose answer is cached.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks a change as made (after its map writes).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn count_key(&self, k: &ClientKey, delta: isize) {
        if k.kind() == lease_store::KeyKind::ClientId {
            if delta > 0 {
                self.client_ids.fetch_add(1, Ordering::Relaxed);
            } else {
                self.client_ids.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Calls `f` with the registration `key` names, if any. No lock, no allocation.
    #[inline]
    pub fn with<R>(&self, key: &ClientKey, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let g = self.by_key.guard();
        self.by_key.get(key, &g).map(f)
    }

    /// Whether `addr` is some registration's fixed address and that registration is not
    /// `key`'s.
    #[inline]
    pub fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey) -> bool {
        if self.fixed_addrs.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let g = self.by_addr.guard();
        self.by_addr.get(&addr, &g).is_some_and(|o| !o.has_key(key))
    }

    /// The registration whose fixed address is `addr`.
    pub fn by_address(&self, addr: Ipv4Addr) -> Option<Registration> {
        let g = self.by_addr.guard();
        let k = self.by_addr.get(&addr, &g)?.first()?;
        self.get(&k)
    }

    /// The registration `key` names (a copy).
    pub fn get(&self, key: &ClientKey) -> Option<Registration> {
        self.with(key, |e| e.reg.clone())
    }

    /// Registrations (each counted once).
    pub fn len(&self) -> usize {
        let g = self.by_key.guard();
        // An entry with both keys is counted at its first key only.
        self.by_key
            .iter(&g)
            .filter(|(k, e)| e.first_key().as_ref() == Some(*k))
            .count()
    }

    /// No registrations.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every registration, sorted by MAC then client id (export).
    pub fn all(&self) -> Vec<Registration> {
        let g = self.by_key.guard();
        let mut v: Vec<Registration> = self
            .by_key
            .iter(&g)
            .filter(|(k, e)| e.first_key().as_ref() == Some(*k))
            .map(|(_, e)| e.reg.clone())
            .collect();
        v.sort_by(|a, b| (a.mac, &a.client_id).cmp(&(b.mac, &b.client_id)));
        v
    }

    /// The registrations that share a key with `reg` (what a put replaces).
    pub fn conflicts(&self, reg: &Registration) -> Vec<Registration> {
        let mut out: Vec<Registration> = Vec::new();
        for k in reg.keys() {
            if let Some(r) = self.get(&k) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Whether `reg`'s fixed address belongs to a registration `reg` does not replace.
    pub fn address_taken(&self, reg: &Registration) -> Option<Registration> {
        let a = reg.fixed_address?;
        let g = self.by_addr.guard();
        let o = self.by_addr.get(&a, &g)?;
        if reg.keys().any(|k| o.has_key(&k)) {
            return None;
        }
        self.get(&o.first()?)
    }

    /// Adds `reg`, replacing every registration that shares a key with it. Returns the
    /// replaced ones. Callers check [`Index::address_taken`] first.
    pub fn put(&self, reg: Registration) -> Vec<Registration> {
        let old = self.conflicts(&reg);
        let group = self.intern(&reg.group);
        let e = Entry::new(reg, group);
        let kg = self.by_key.guard();
        let ag = self.by_addr.guard();
        // New mappings first (in place of the old ones), stale ones after.
        if let Some(a) = e.reg.fixed_address {
            if self.by_addr.insert(a, Owner::of(&e.reg), &ag).is_none() {
                self.fixed_addrs.fetch_add(1, Ordering::Relaxed);
            }
        }
        for k in e.reg.keys() {
            if self.by_key.insert(k, e.clone(), &kg).is_none() {
                self.count_key(&k, 1);
            }
        }
        for o in &old {
            for k in o.keys() {
                if !e.has_key(&k) && self.by_key.remove(&k, &kg).is_some() {
                    self.count_key(&k, -1);
                }
            }
            if let Some(a) = o.fixed_address {
                if Some(a) != e.reg.fixed_address {
                    self.remove_addr_of(a, o);
                }
            }
        }
        for w in self.watchers() {
            w.put(&e.reg, &old);
        }
        self.changed();
        old
    }

    /// Removes the registration `key` names; returns it.
    pub fn remove(&self, key: &ClientKey) -> Option<Registration> {
        let old = self.get(key)?;
        let kg = self.by_key.guard();
        for k in old.keys() {
            if self.by_key.remove(&k, &kg).is_some() {
                self.count_key(&k, -1);
            }
        }
        if let Some(a) = old.fixed_address {
            self.remove_addr_of(a, &old);
        }
        for w in self.watchers() {
            w.removed(&old);
        }
        self.changed();
        Some(old)
    }

    /// Unmaps `a` if it is still `owner`'s (another registration may hold it by now).
    fn remove_addr_of(&self, a: Ipv4Addr, owner: &Registration) {
        let ag = self.by_addr.guard();
        if let Ok(Some(_)) =
            self.by_addr
                .remove_if(&a, |_, o| owner.keys().any(|k| o.has_key(&k)), &ag)
        {
            self.fixed_addrs.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Makes the index hold exactly `regs`: each is put (replacing in place), then every
    /// registration not among them is removed. Returns how many were removed.
    pub fn replace(&self, regs: &[Registration]) -> usize {
        let mut keep = std::collections::HashSet::with_capacity(regs.len() * 2);
        for r in regs {
            keep.extend(r.keys());
            self.put(r.clone());
        }
        let stale: Vec<ClientKey> = {
            let g = self.by_key.guard();
            self.by_key
                .iter(&g)
                .filter(|(k, _)| !keep.contains(*k))
                .map(|(k, _)| *k)
                .collect()
        };
        let mut n = 0;
        for k in stale {
            if self.remove(&k).is_some() {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::mac_key;

    fn reg(last: u8, fixed: Option<u8>) -> Registration {
        Registration {
            mac: Some([0, 1, 2, 3, 4, last]),
            client_id: None,
            group: "g".into(),
            fixed_address: fixed.map(|f| Ipv4Addr::new(10, 0, 0, f)),
            host_name: None,
            next_server: None,
            boot_file: None,
            options: Default::default(),
        }
    }

    #[test]
    fn registration_index_put_modify_remove() {
        let ix = Index::new();
        assert!(ix.put(reg(1, Some(5))).is_empty());
        let k = mac_key(&[0, 1, 2, 3, 4, 1]);
        assert_eq!(
            ix.with(&k, |e| e.reg.fixed_address),
            Some(Some(Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert!(ix.reserved_for_other(Ipv4Addr::new(10, 0, 0, 5), &mac_key(&[9; 6])));
        assert!(!ix.reserved_for_other(Ipv4Addr::new(10, 0, 0, 5), &k));
        // Modify: the fixed address moves; the old one is free again.
        let old = ix.put(reg(1, Some(6)));
        assert_eq!(old.len(), 1);
        assert!(!ix.reserved_for_other(Ipv4Addr::new(10, 0, 0, 5), &mac_key(&[9; 6])));
        assert!(ix.reserved_for_other(Ipv4Addr::new(10, 0, 0, 6), &mac_key(&[9; 6])));
        assert_eq!(ix.len(), 1);
        assert_eq!(
            ix.remove(&k).map(|r| r.fixed_address),
            Some(Some(Ipv4Addr::new(10, 0, 0, 6)))
        );
        assert!(ix.is_empty());
        assert!(!ix.reserved_for_other(Ipv4Addr::new(10, 0, 0, 6), &mac_key(&[9; 6])));
    }

    #[test]
    fn registration_index_both_keys_counted_once() {
        let ix = Index::new();
        let mut r = reg(1, None);
        r.client_id = Some(vec![1, 0, 1, 2, 3, 4, 1]);
        ix.put(r.clone());
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.all(), vec![r.clone()]);
        // Putting the MAC alone replaces the registration, the client id key goes.
        assert!(ix.has_client_ids());
        ix.put(reg(1, None));
        assert!(!ix.has_client_ids());
        assert_eq!(ix.len(), 1);
        assert!(ix
            .get(&ClientKey::from_client_id(&[1, 0, 1, 2, 3, 4, 1]))
            .is_none());
    }

    #[test]
    fn registration_index_generation_rises_on_every_change() {
        let ix = Index::new();
        let g0 = ix.generation();
        ix.put(reg(1, Some(5)));
        let g1 = ix.generation();
        assert!(g1 > g0, "put");
        ix.put(reg(1, Some(6)));
        let g2 = ix.generation();
        assert!(g2 > g1, "modify");
        // A lookup changes nothing.
        assert!(ix.get(&mac_key(&[0, 1, 2, 3, 4, 1])).is_some());
        assert_eq!(ix.generation(), g2);
        assert!(ix.remove(&mac_key(&[0, 1, 2, 3, 4, 1])).is_some());
        let g3 = ix.generation();
        assert!(g3 > g2, "remove");
        // Removing what is not there is no change.
        assert!(ix.remove(&mac_key(&[0, 1, 2, 3, 4, 1])).is_none());
        assert_eq!(ix.generation(), g3);
        ix.replace(&[reg(2, None)]);
        assert!(ix.generation() > g3, "replace");
    }

    #[test]
    fn registration_index_fixed_address_count_follows_the_map() {
        let ix = Index::new();
        let other = mac_key(&[9; 6]);
        let a5 = Ipv4Addr::new(10, 0, 0, 5);
        let a6 = Ipv4Addr::new(10, 0, 0, 6);
        ix.put(reg(1, Some(5)));
        ix.put(reg(2, Some(6)));
        assert!(ix.reserved_for_other(a5, &other));
        // Move 1's address: 5 is free, 6 still 2's.
        ix.put(reg(1, Some(7)));
        assert!(!ix.reserved_for_other(a5, &other));
        assert!(ix.reserved_for_other(a6, &other));
        // No fixed address left: the fast path answers, and answers right.
        ix.put(reg(1, None));
        ix.remove(&mac_key(&[0, 1, 2, 3, 4, 2]));
        assert_eq!(ix.fixed_addrs.load(Ordering::Relaxed), 0);
        assert!(!ix.reserved_for_other(a6, &other));
        ix.put(reg(3, Some(6)));
        assert!(ix.reserved_for_other(a6, &other));
    }

    #[test]
    fn registration_index_replace_removes_the_rest() {
        let ix = Index::new();
        for i in 0..10 {
            ix.put(reg(i, Some(i + 10)));
        }
        let removed = ix.replace(&[reg(3, Some(40)), reg(50, None)]);
        assert_eq!(removed, 9);
        assert_eq!(ix.len(), 2);
        assert!(ix.by_address(Ipv4Addr::new(10, 0, 0, 13)).is_none());
        assert!(ix.by_address(Ipv4Addr::new(10, 0, 0, 40)).is_some());
    }
}
