//! xdhcpd's own per-binding data inside a binding transaction's vendor-options (option 29,
//! draft-12: vendor-specific, meaningful to the vendor named in CONNECT's vendor-class).
//!
//! The engine adds it only to transactions for an xdhcpd partner (its CONNECT / CONNECTACK
//! vendor-class starts with `xdhcpd-`); ISC dhcpd never receives it, and a transaction
//! without it means "none of these flags". Value: the 7 bytes `xdhcpd\0`, then
//! sub-options `code` u8, `length` u8, value. Sub-option 1 (binding flags, one byte):
//! bit 0 the binding is being reconfigured (FORCERENEW sent or NAK deferred), bit 1 the
//! client holds an RFC 6704 reconfigure key. Unknown sub-options are skipped (a newer
//! partner may send more); a vendor-options value of another vendor is ignored.

/// What starts the value when it is ours.
pub const PREFIX: &[u8; 7] = b"xdhcpd\0";
/// Sub-option: binding flags (one byte).
pub const SUB_BINDING_FLAGS: u8 = 1;
/// Binding flag: reconfiguring.
pub const FLAG_RECONFIGURING: u8 = 0x01;
/// Binding flag: the client holds an RFC 6704 reconfigure key.
pub const FLAG_RECONF_KEY: u8 = 0x02;

/// The vendor-options value carrying `flags` (None: no flag set, nothing to send).
pub fn encode(flags: u8) -> Option<Vec<u8>> {
    if flags == 0 {
        return None;
    }
    let mut v = Vec::with_capacity(PREFIX.len() + 3);
    v.extend_from_slice(PREFIX);
    v.extend_from_slice(&[SUB_BINDING_FLAGS, 1, flags]);
    Some(v)
}

/// The binding flags of a vendor-options value: `Ok(None)` when it is another vendor's,
/// `Ok(Some(0))` when ours without flags, Err when ours and malformed.
pub fn decode(v: &[u8]) -> Result<Option<u8>, &'static str> {
    let Some(mut rest) = v.strip_prefix(PREFIX.as_slice()) else {
        return Ok(None);
    };
    let mut flags = 0u8;
    while !rest.is_empty() {
        let [code, len, tail @ ..] = rest else {
            return Err("xdhcpd vendor-options: truncated sub-option header");
        };
        let len = usize::from(*len);
        if tail.len() < len {
            return Err("xdhcpd vendor-options: sub-option longer than the option");
        }
        let (val, next) = tail.split_at(len);
        if *code == SUB_BINDING_FLAGS {
            let [f] = val else {
                return Err("xdhcpd vendor-options: binding flags are not one byte");
            };
            flags = *f;
        }
        rest = next;
    }
    Ok(Some(flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_xdhcpd_flags_round_trip_and_hostile_values() {
        assert_eq!(encode(0), None);
        let v = encode(FLAG_RECONFIGURING | FLAG_RECONF_KEY).expect("flags set");
        assert_eq!(decode(&v), Ok(Some(3)));
        // Another vendor's value is not ours.
        assert_eq!(decode(b"isc\0\x01\x01\x01"), Ok(None));
        assert_eq!(decode(b""), Ok(None));
        // Ours: an unknown sub-option is skipped, a later flags one is read.
        let mut w = PREFIX.to_vec();
        w.extend_from_slice(&[9, 2, 0xaa, 0xbb, SUB_BINDING_FLAGS, 1, 1]);
        assert_eq!(decode(&w), Ok(Some(1)));
        // Malformed: truncated header, overlong length, wrong flag length.
        for bad in [&[1u8][..], &[1, 5, 0], &[1, 2, 1, 1]] {
            let mut w = PREFIX.to_vec();
            w.extend_from_slice(bad);
            assert!(decode(&w).is_err(), "{bad:?}");
        }
    }
}
