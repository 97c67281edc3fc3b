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

#[cfg(test)]
mod tests {
    use super::*;

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
