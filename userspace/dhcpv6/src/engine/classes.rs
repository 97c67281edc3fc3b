//! Client classes for DHCPv6: the `[[class]]` conditions read against a DHCPv6 message
//! ([`Facts6`], built once per message) and the class set of its client ([`classify`]),
//! without allocating.
//!
//! How each condition reads a DHCPv6 message:
//!
//! | condition | DHCPv6 |
//! |---|---|
//! | `enterprise` | the Vendor Class option (16)'s enterprise number (DHCPv6 only) |
//! | `vendor-class*` | an item of option 16's vendor-class-data (each condition: some item) |
//! | `user-class*` | an item of the User Class option (15) |
//! | `circuit-id` | the Interface-Id (18) of the relay nearest the client |
//! | `remote-id` | the Remote-Id (37, RFC 4649) of that relay, after its enterprise number |
//! | `subscriber-id` | its Subscriber-Id (38, RFC 4580) |
//! | `remote-id-is-chaddr` | that remote-id equals (or not) the client's link-layer address |
//! | `hw-prefix` | the client's link-layer address starts with it |
//! | `client-id` | the DUID exactly |
//! | `known` | the DUID has a `[[subnet6.reservation]]` |
//! | `giaddr`, `group` | never (DHCPv4 relays; registrations carry no DUID groups yet) |
//!
//! The client's link-layer address is the relay's Client Link-Layer Address option (79,
//! RFC 6939) or else the one inside a DUID-LLT / DUID-LL of hardware type 1 (Ethernet).

use xdhcpd_config::{BytesMatch, ClassMatch, ClassSet};

use crate::config::Class6;

/// What class matching reads about one message's client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts6<'a> {
    /// The DUID.
    pub duid: &'a [u8],
    /// Registered (a reservation for the DUID).
    pub known: bool,
    /// Option 16: enterprise number and the vendor-class-data items (each with its 2-byte
    /// length).
    pub vendor: Option<(u32, &'a [u8])>,
    /// Option 15: the user-class-data items (each with its 2-byte length).
    pub user_class: Option<&'a [u8]>,
    /// Interface-Id of the relay nearest the client.
    pub interface_id: Option<&'a [u8]>,
    /// Remote-Id of that relay, after its 4-byte enterprise number.
    pub remote_id: Option<&'a [u8]>,
    /// Subscriber-Id of that relay.
    pub subscriber_id: Option<&'a [u8]>,
    /// The client's link-layer address (option 79, else from the DUID).
    pub lladdr: Option<&'a [u8]>,
}

/// The items of an RFC 8415 opaque-data list (2-byte length, data); a truncated item ends
/// the list.
#[inline]
fn items(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if b.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let item = b.get(2..2 + n)?;
        b = &b[2 + n..];
        Some(item)
    })
}

/// Every test passes some item of the list (absent list: only when there is no test).
#[inline]
fn list_passes(tests: &[BytesMatch], list: Option<&[u8]>) -> bool {
    if tests.is_empty() {
        return true;
    }
    let Some(list) = list else { return false };
    tests.iter().all(|t| items(list).any(|i| t.test(i)))
}

#[inline]
fn field_passes(test: &Option<BytesMatch>, v: Option<&[u8]>) -> bool {
    match test {
        None => true,
        Some(t) => v.is_some_and(|v| t.test(v)),
    }
}

/// The link-layer address inside a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1.
#[inline]
pub fn duid_lladdr(duid: &[u8]) -> Option<&[u8]> {
    match duid {
        [0, 1, 0, 1, _, _, _, _, mac @ ..] | [0, 3, 0, 1, mac @ ..] if mac.len() == 6 => Some(mac),
        _ => None,
    }
}

/// Whether the client of `f` meets every condition of `m`.
pub fn matches(m: &ClassMatch, f: &Facts6<'_>) -> bool {
    if let Some(k) = m.known {
        if k != f.known {
            return false;
        }
    }
    if m.group.is_some() || !m.giaddr.is_empty() {
        return false;
    }
    if let Some(e) = m.enterprise {
        if f.vendor.is_none_or(|(en, _)| en != e) {
            return false;
        }
    }
    if !list_passes(&m.vendor_class, f.vendor.map(|v| v.1))
        || !list_passes(&m.user_class, f.user_class)
    {
        return false;
    }
    if !field_passes(&m.circuit_id, f.interface_id)
        || !field_passes(&m.remote_id, f.remote_id)
        || !field_passes(&m.subscriber_id, f.subscriber_id)
    {
        return false;
    }
    if let Some(want) = m.remote_id_is_chaddr {
        let (Some(r), Some(hw)) = (f.remote_id, f.lladdr) else {
            return false;
        };
        if (r == hw) != want {
            return false;
        }
    }
    if let Some(cid) = &m.client_id {
        if f.duid != cid.as_slice() {
            return false;
        }
    }
    if let Some(p) = &m.hw_prefix {
        if !f.lladdr.is_some_and(|hw| hw.starts_with(p)) {
            return false;
        }
    }
    m.has_conditions()
}

/// The classes of the client of `f`, evaluated in file order.
pub fn classify(classes: &[Class6], f: &Facts6<'_>) -> ClassSet {
    let mut set = ClassSet::EMPTY;
    for c in classes {
        if matches(&c.matches, f) {
            set.insert(c.id);
        }
    }
    set
}

// The facts a class needs present (`Needs`), one bit each.
const VENDOR: u8 = 1;
const USER: u8 = 1 << 1;
const IFID: u8 = 1 << 2;
const REMOTE: u8 = 1 << 3;
const SUBSCRIBER: u8 = 1 << 4;
const LLADDR: u8 = 1 << 5;
const KNOWN: u8 = 1 << 6;
const UNKNOWN: u8 = 1 << 7;

/// What a class needs of a message before its conditions are worth reading, computed once
/// per configuration: the facts that must be present (a class testing option 16 needs
/// option 16, a remote-id test needs a relay's remote-id, `known` needs the registration
/// state it names), or `None` for a class no DHCPv6 client can match (`giaddr`, `group`, no
/// condition). A message's [`Needs::have`] is built once; a class whose needs it lacks is
/// passed over with one AND instead of a walk through its conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs(Option<u8>);

impl Needs {
    /// The needs of the conditions `m`.
    pub fn of(m: &ClassMatch) -> Self {
        if m.group.is_some() || !m.giaddr.is_empty() || !m.has_conditions() {
            return Needs(None);
        }
        let mut n = 0;
        if m.enterprise.is_some() || !m.vendor_class.is_empty() {
            n |= VENDOR;
        }
        if !m.user_class.is_empty() {
            n |= USER;
        }
        if m.circuit_id.is_some() {
            n |= IFID;
        }
        if m.remote_id.is_some() || m.remote_id_is_chaddr.is_some() {
            n |= REMOTE;
        }
        if m.subscriber_id.is_some() {
            n |= SUBSCRIBER;
        }
        if m.hw_prefix.is_some() || m.remote_id_is_chaddr.is_some() {
            n |= LLADDR;
        }
        match m.known {
            Some(true) => n |= KNOWN,
            Some(false) => n |= UNKNOWN,
            None => {}
        }
        Needs(Some(n))
    }

    /// The facts `f` has, as the bits [`Needs::of`] asks for.
    #[inline]
    pub fn have(f: &Facts6<'_>) -> u8 {
        let bit = |present: bool, b: u8| if present { b } else { 0 };
        bit(f.vendor.is_some(), VENDOR)
            | bit(f.user_class.is_some(), USER)
            | bit(f.interface_id.is_some(), IFID)
            | bit(f.remote_id.is_some(), REMOTE)
            | bit(f.subscriber_id.is_some(), SUBSCRIBER)
            | bit(f.lladdr.is_some(), LLADDR)
            | if f.known { KNOWN } else { UNKNOWN }
    }

    /// A message with the facts `have` may meet the class's conditions (they are then read
    /// by [`matches`]).
    #[inline]
    pub fn met_by(self, have: u8) -> bool {
        self.0.is_some_and(|n| n & !have == 0)
    }
}

/// [`classify`] with each class's [`Needs`] (`needs[i]` of `classes[i]`) checked first: the
/// same set, fewer conditions read.
pub fn classify_with(classes: &[Class6], needs: &[Needs], f: &Facts6<'_>) -> ClassSet {
    let have = Needs::have(f);
    let mut set = ClassSet::EMPTY;
    for (c, n) in classes.iter().zip(needs) {
        if n.met_by(have) && matches(&c.matches, f) {
            set.insert(c.id);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-filter never changes a class set: every class kind against messages with and
    /// without each fact.
    #[test]
    fn dhcpv6_class_needs_prefilter_agrees_with_the_full_match() {
        let b = |s: &str| BytesMatch::Exact(s.as_bytes().to_vec());
        let kinds = [
            ClassMatch {
                enterprise: Some(4491),
                ..ClassMatch::default()
            },
            ClassMatch {
                vendor_class: vec![BytesMatch::Prefix(b"docsis".to_vec())],
                ..ClassMatch::default()
            },
            ClassMatch {
                user_class: vec![b("gw")],
                ..ClassMatch::default()
            },
            ClassMatch {
                circuit_id: Some(b("port1")),
                ..ClassMatch::default()
            },
            ClassMatch {
                remote_id: Some(b("cmts")),
                ..ClassMatch::default()
            },
            ClassMatch {
                subscriber_id: Some(b("sub")),
                ..ClassMatch::default()
            },
            ClassMatch {
                remote_id_is_chaddr: Some(true),
                ..ClassMatch::default()
            },
            ClassMatch {
                remote_id_is_chaddr: Some(false),
                ..ClassMatch::default()
            },
            ClassMatch {
                hw_prefix: Some(vec![2, 0]),
                ..ClassMatch::default()
            },
            ClassMatch {
                client_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]),
                ..ClassMatch::default()
            },
            ClassMatch {
                known: Some(true),
                ..ClassMatch::default()
            },
            ClassMatch {
                known: Some(false),
                ..ClassMatch::default()
            },
            ClassMatch {
                group: Some(3),
                ..ClassMatch::default()
            },
            ClassMatch::default(),
            ClassMatch {
                enterprise: Some(4491),
                user_class: vec![b("gw")],
                known: Some(false),
                ..ClassMatch::default()
            },
        ];
        let classes: Vec<Class6> = kinds
            .iter()
            .enumerate()
            .map(|(i, m)| Class6 {
                id: i as u8,
                name: format!("c{i}"),
                matches: m.clone(),
                vendor_options: vec![],
            })
            .collect();
        let needs: Vec<Needs> = classes.iter().map(|c| Needs::of(&c.matches)).collect();
        let vc = [0, 9, b'd', b'o', b'c', b's', b'i', b's', b'3', b'.', b'0'];
        let uc = [0, 2, b'g', b'w'];
        let mac = [2u8, 0, 0, 0, 0, 1];
        let mut seen = ClassSet::EMPTY;
        for bits in 0u32..(1 << 8) {
            let on = |i: u32| bits & (1 << i) != 0;
            let f = Facts6 {
                duid: &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
                known: on(0),
                vendor: on(1).then_some((4491, &vc[..])),
                user_class: on(2).then_some(&uc[..]),
                interface_id: on(3).then_some(&b"port1"[..]),
                remote_id: on(4).then(|| if on(7) { &mac[..] } else { &b"cmts"[..] }),
                subscriber_id: on(5).then_some(&b"sub"[..]),
                lladdr: on(6).then_some(&mac[..]),
            };
            let full = classify(&classes, &f);
            assert_eq!(classify_with(&classes, &needs, &f), full, "facts {bits:#b}");
            seen = ClassSet(seen.0 | full.0);
        }
        // Every class that can match did for some facts (the test reaches each kind).
        for i in 0..12u8 {
            assert!(seen.contains(i), "class {i} never matched");
        }
        assert!(!seen.contains(12) && !seen.contains(13));
    }

    #[test]
    fn dhcpv6_class_lists_and_duid_lladdr() {
        let list = [0, 3, b'a', b'b', b'c', 0, 2, b'x', b'y', 0, 9, b'z'];
        let got: Vec<&[u8]> = items(&list).collect();
        assert_eq!(
            got,
            vec![&b"abc"[..], &b"xy"[..]],
            "a truncated item ends the list"
        );
        let m = ClassMatch {
            user_class: vec![BytesMatch::Exact(b"xy".to_vec())],
            ..ClassMatch::default()
        };
        let f = Facts6 {
            user_class: Some(&list),
            ..Facts6::default()
        };
        assert!(matches(&m, &f));
        assert!(!matches(&m, &Facts6::default()));
        let llt = [0, 1, 0, 1, 1, 2, 3, 4, 0xaa, 0xbb, 0xcc, 0, 0, 1];
        assert_eq!(duid_lladdr(&llt), Some(&llt[8..]));
        assert_eq!(
            duid_lladdr(&[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
            Some(&[1, 2, 3, 4, 5, 6][..])
        );
        assert_eq!(duid_lladdr(&[0, 2, 0, 0, 0x11, 0x8b, 1]), None);
    }
}
