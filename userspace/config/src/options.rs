//! A subnet's DHCP options, encoded once at load time.
//!
//! All options live as ready-made TLVs (`code, len, value...`) in one buffer; a
//! 256-entry table maps a code to its TLV, so the engine can answer a parameter
//! request list by copying slices, without allocating or encoding per packet.

use std::fmt;

/// Table entry for an absent option.
const ABSENT: u16 = u16::MAX;

/// Encoded options of one subnet, keyed by option code.
///
/// Invariants: `buf` holds each present option's TLV exactly once (so it is at
/// most 254 * 257 = 65,278 bytes and every offset fits a u16 below `ABSENT`);
/// `table[code]` is the offset of its code byte, or `ABSENT`; codes 0 and 255
/// are never present; every value is at most 255 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SubnetOptions {
    table: [u16; 256],
    buf: Vec<u8>,
}

impl Default for SubnetOptions {
    fn default() -> Self {
        SubnetOptions {
            table: [ABSENT; 256],
            buf: Vec::new(),
        }
    }
}

impl SubnetOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value bytes of option `code` (without code and length).
    #[inline]
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.get_tlv(code).map(|tlv| &tlv[2..])
    }

    /// The whole TLV of option `code` (`code, len, value...`), ready to copy into a reply.
    #[inline]
    pub fn get_tlv(&self, code: u8) -> Option<&[u8]> {
        let start = self.table[usize::from(code)];
        if start == ABSENT {
            return None;
        }
        let start = usize::from(start);
        let len = usize::from(*self.buf.get(start + 1)?);
        self.buf.get(start..start + 2 + len)
    }

    #[inline]
    pub fn contains(&self, code: u8) -> bool {
        self.table[usize::from(code)] != ABSENT
    }

    /// Present option codes in ascending order.
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..=255).filter(move |&c| self.contains(c))
    }

    /// Number of options present.
    pub fn len(&self) -> usize {
        self.table.iter().filter(|&&s| s != ABSENT).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets option `code` to `value`, replacing an earlier value.
    ///
    /// Refuses pad (0), end (255) and values longer than 255 bytes (those would
    /// need RFC 3396 splitting, which the configuration does not offer).
    pub fn set(&mut self, code: u8, value: &[u8]) -> Result<(), OptionError> {
        if code == 0 || code == 255 {
            return Err(OptionError::ReservedCode(code));
        }
        let len = u8::try_from(value.len()).map_err(|_| OptionError::TooLong(value.len()))?;
        if self.contains(code) {
            self.remove(code);
        }
        // Cannot fail given the invariant; checked rather than assumed.
        let start = u16::try_from(self.buf.len())
            .ok()
            .filter(|&s| s != ABSENT)
            .ok_or(OptionError::TooLong(value.len()))?;
        self.buf.push(code);
        self.buf.push(len);
        self.buf.extend_from_slice(value);
        self.table[usize::from(code)] = start;
        Ok(())
    }

    /// Removes option `code` (load time only: it shifts the buffer).
    pub fn remove(&mut self, code: u8) {
        let Some(tlv_len) = self.get_tlv(code).map(<[u8]>::len) else {
            return;
        };
        let start = self.table[usize::from(code)];
        self.buf
            .drain(usize::from(start)..usize::from(start) + tlv_len);
        self.table[usize::from(code)] = ABSENT;
        // tlv_len <= 257, so it fits a u16.
        let shift = tlv_len as u16;
        for s in self
            .table
            .iter_mut()
            .filter(|s| **s != ABSENT && **s > start)
        {
            *s -= shift;
        }
    }

    /// Appends the TLVs of `codes` that are present (in the order given, each
    /// once) to `out`; returns the number of bytes written.
    pub fn append_requested(&self, codes: &[u8], out: &mut Vec<u8>) -> usize {
        let before = out.len();
        let mut seen = [false; 256];
        for &c in codes {
            if std::mem::replace(&mut seen[usize::from(c)], true) {
                continue;
            }
            if let Some(tlv) = self.get_tlv(c) {
                out.extend_from_slice(tlv);
            }
        }
        out.len() - before
    }
}

impl fmt::Debug for SubnetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for c in self.codes() {
            m.entry(&c, &self.get(c).unwrap_or_default());
        }
        m.finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    ReservedCode(u8),
    TooLong(usize),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::ReservedCode(c) => write!(f, "option code {c} is pad/end, not an option"),
            OptionError::TooLong(n) => write!(f, "encoded value is {n} bytes; the limit is 255"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_tlv() {
        let mut o = SubnetOptions::new();
        o.set(3, &[10, 0, 0, 1]).unwrap();
        o.set(15, b"example").unwrap();
        o.set(80, &[]).unwrap();
        assert_eq!(o.get(3), Some(&[10, 0, 0, 1][..]));
        assert_eq!(o.get_tlv(3), Some(&[3, 4, 10, 0, 0, 1][..]));
        assert_eq!(o.get(80), Some(&[][..]));
        assert_eq!(o.get_tlv(80), Some(&[80, 0][..]));
        assert_eq!(o.get(6), None);
        assert_eq!(o.codes().collect::<Vec<_>>(), vec![3, 15, 80]);
        assert_eq!(o.len(), 3);
        // Replacing keeps a single entry with the new value.
        o.set(3, &[10, 0, 0, 2]).unwrap();
        assert_eq!(o.get(3), Some(&[10, 0, 0, 2][..]));
        assert_eq!(o.get(15), Some(&b"example"[..]));
        assert_eq!(o.len(), 3);
        o.remove(15);
        assert_eq!(o.get(15), None);
        assert_eq!(o.get(3), Some(&[10, 0, 0, 2][..]));
        assert_eq!(o.get_tlv(80), Some(&[80, 0][..]));
    }

    #[test]
    fn every_code_at_full_length_fits() {
        let mut o = SubnetOptions::new();
        for c in 1..=254u8 {
            o.set(c, &[c; 255]).unwrap();
        }
        // Replacing values never grows the buffer past the u16 range.
        for c in 1..=254u8 {
            o.set(c, &[!c; 255]).unwrap();
        }
        assert_eq!(o.len(), 254);
        for c in 1..=254u8 {
            assert_eq!(o.get(c), Some(&[!c; 255][..]));
        }
    }

    #[test]
    fn refusals() {
        let mut o = SubnetOptions::new();
        assert_eq!(o.set(0, &[1]), Err(OptionError::ReservedCode(0)));
        assert_eq!(o.set(255, &[1]), Err(OptionError::ReservedCode(255)));
        assert_eq!(o.set(43, &[0; 256]), Err(OptionError::TooLong(256)));
        assert!(o.set(43, &[0; 255]).is_ok());
    }

    #[test]
    fn append_requested_follows_request_order_once() {
        let mut o = SubnetOptions::new();
        o.set(1, &[255, 255, 255, 0]).unwrap();
        o.set(3, &[10, 0, 0, 1]).unwrap();
        let mut out = vec![0xAA];
        let n = o.append_requested(&[3, 99, 1, 3], &mut out);
        assert_eq!(n, 12);
        assert_eq!(out, [0xAA, 3, 4, 10, 0, 0, 1, 1, 4, 255, 255, 255, 0]);
    }
}
