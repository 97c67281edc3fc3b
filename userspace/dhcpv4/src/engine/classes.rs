//! Client classes: what the engine knows about a client ([`ClientFacts`], built in one
//! place per message) and the class set it belongs to ([`classify`]), once per message,
//! without allocating.
//!
//! Registration lookup: until the live registration store lands, a client is KNOWN when the
//! configuration registers it (`[[host]]` or `[[subnet.reservation]]`), by its option 61 or
//! its Ethernet hardware address; the registration may name a `group` (a class).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use lease_store::ClientKey;
use xdhcpd_config::{BytesMatch, Class, ClassId, ClassMatch, ClassSet, Config, ReservationKey};

use crate::wire::{relay_sub, Message, SubOptionIter, Summary};

/// Everything class matching reads about one message's client. Built once per message by
/// [`Registrations::facts`]; the registration store will feed `known` and `group`.
#[derive(Clone, Copy, Debug)]
pub struct ClientFacts<'a> {
    /// The client is registered (KNOWN).
    pub known: bool,
    /// Its registration's group (a class id).
    pub group: Option<ClassId>,
    /// chaddr when the hardware type is Ethernet (htype 1, hlen 6).
    pub hw: Option<&'a [u8]>,
    /// giaddr (0.0.0.0 for a directly attached client).
    pub giaddr: Ipv4Addr,
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77.
    pub user_class: Option<&'a [u8]>,
    /// Option 61.
    pub client_id: Option<&'a [u8]>,
    /// Option 82 sub-option 1.
    pub circuit_id: Option<&'a [u8]>,
    /// Option 82 sub-option 2.
    pub remote_id: Option<&'a [u8]>,
    /// Option 82 sub-option 6.
    pub subscriber_id: Option<&'a [u8]>,
}

impl Default for ClientFacts<'_> {
    fn default() -> Self {
        ClientFacts {
            known: false,
            group: None,
            hw: None,
            giaddr: Ipv4Addr::UNSPECIFIED,
            vendor_class: None,
            user_class: None,
            client_id: None,
            circuit_id: None,
            remote_id: None,
            subscriber_id: None,
        }
    }
}

/// One registration: KNOWN, and maybe in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The class the registration puts the client in.
    pub group: Option<ClassId>,
}

/// Registered clients by lease-table key (option 61 or Ethernet address).
#[derive(Debug, Default)]
pub struct Registrations {
    by_key: HashMap<ClientKey, Registration>,
}

impl Registrations {
    /// The configuration's `[[host]]`s and reservations.
    pub fn from_config(cfg: &Config) -> Self {
        let mut by_key = HashMap::new();
        let key = |k: &ReservationKey| match k {
            ReservationKey::Hw(mac) => ClientKey::from_hw(1, mac),
            ReservationKey::ClientId(id) => ClientKey::from_client_id(id),
        };
        for s in &cfg.subnets {
            for r in &s.reservations {
                by_key.insert(key(&r.key), Registration { group: r.group });
            }
        }
        for h in &cfg.hosts {
            by_key.insert(key(&h.key), Registration { group: h.group });
        }
        Registrations { by_key }
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The registration of a client with lease key `key` (its option 61 or its hardware
    /// address) or, when it sent option 61, with Ethernet address `hw`.
    #[inline]
    pub fn lookup(&self, key: &ClientKey, hw: Option<&[u8]>) -> Option<Registration> {
        if self.by_key.is_empty() {
            return None;
        }
        if let Some(r) = self.by_key.get(key) {
            return Some(*r);
        }
        let hw_key = ClientKey::from_hw(1, hw?);
        if hw_key == *key {
            return None;
        }
        self.by_key.get(&hw_key).copied()
    }

    /// The one place a message's [`ClientFacts`] are built.
    pub fn facts<'a>(
        &self,
        msg: &Message<'a>,
        sum: &Summary<'a>,
        key: &ClientKey,
    ) -> ClientFacts<'a> {
        let hw = (msg.htype() == 1 && msg.hlen() == 6).then(|| msg.chaddr());
        let reg = self.lookup(key, hw);
        let mut f = ClientFacts {
            known: reg.is_some(),
            group: reg.and_then(|r| r.group),
            hw,
            giaddr: msg.giaddr(),
            vendor_class: sum.vendor_class,
            user_class: sum.user_class,
            client_id: sum.client_id,
            ..ClientFacts::default()
        };
        if let Some(ri) = sum.relay_agent_info {
            // Malformed option 82 was refused by `Message::summary`; stop quietly anyway.
            for (code, v) in SubOptionIter::new(ri).map_while(Result::ok) {
                match code {
                    relay_sub::CIRCUIT_ID => f.circuit_id = Some(v),
                    relay_sub::REMOTE_ID => f.remote_id = Some(v),
                    relay_sub::SUBSCRIBER_ID => f.subscriber_id = Some(v),
                    _ => {}
                }
            }
        }
        f
    }
}

#[inline]
fn field_passes(tests: &[BytesMatch], v: Option<&[u8]>) -> bool {
    tests.is_empty() || v.is_some_and(|v| tests.iter().all(|t| t.test(v)))
}

#[inline]
fn sub_passes(test: &Option<BytesMatch>, v: Option<&[u8]>) -> bool {
    match test {
        None => true,
        Some(t) => v.is_some_and(|v| t.test(v)),
    }
}

/// Whether the client of `f` meets every condition of `m` (a class without conditions
/// has no members but its registered group).
pub fn matches(m: &ClassMatch, f: &ClientFacts<'_>) -> bool {
    // Most classes fail a condition early; whether there is any condition at all is asked
    // only of a class that passed them all.
    if let Some(k) = m.known {
        if k != f.known {
            return false;
        }
    }
    if let Some(g) = m.group {
        if f.group != Some(g) {
            return false;
        }
    }
    if m.enterprise.is_some() {
        return false; // a DHCPv6 condition (option 16's enterprise number)
    }
    if !field_passes(&m.vendor_class, f.vendor_class) || !field_passes(&m.user_class, f.user_class)
    {
        return false;
    }
    if !sub_passes(&m.circuit_id, f.circuit_id)
        || !sub_passes(&m.remote_id, f.remote_id)
        || !sub_passes(&m.subscriber_id, f.subscriber_id)
    {
        return false;
    }
    if let Some(want) = m.remote_id_is_chaddr {
        let (Some(r), Some(hw)) = (f.remote_id, f.hw) else {
            return false;
        };
        if (r == hw) != want {
            return false;
        }
    }
    if let Some(cid) = &m.client_id {
        if f.client_id != Some(cid.as_slice()) {
            return false;
        }
    }
    if let Some(p) = &m.hw_prefix {
        if !f.hw.is_some_and(|hw| hw.starts_with(p)) {
            return false;
        }
    }
    if !m.giaddr.is_empty()
        && (f.giaddr.is_unspecified() || !m.giaddr.iter().any(|n| n.contains(f.giaddr)))
    {
        return false;
    }
    m.has_conditions()
}

/// The classes of the client of `f`, evaluated in file order: its registration's group
/// plus every class whose conditions it meets.
pub fn classify(classes: &[Class], f: &ClientFacts<'_>) -> ClassSet {
    let mut set = ClassSet::EMPTY;
    if let Some(g) = f.group {
        set.insert(g);
    }
    for c in classes {
        if matches(&c.matches, f) {
            set.insert(c.id);
        }
    }
    set
}
