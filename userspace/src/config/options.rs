//! A subnet's DHCP options, encoded once at load time.
//!
//! All options live as ready-made TLVs (`code, len, value...`) in one buffer; a
//! 256-entry table maps a code to its TLV, so the engine can answer a parameter
//! request list by copying slices, without allocating or encoding per packet.

use std::fmt;

/// Where one option's TLV lives in `SubnetOptions::buf`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Offset of the code byte.
    start: u32,
    /// Length of the value (the TLV is `len + 2` bytes).
    len: u8,
}

/// Encoded options of one subnet, keyed by option code.
///
/// Invariants: every present code is in 1..=254; every value is at most 255
/// bytes; `buf[start] == code` and `buf[start + 1] == len` for every slot.
#[derive(Clone, PartialEq, Eq)]
pub struct SubnetOptions {
    table: Box<[Option<Slot>; 256]>,
    buf: Vec<u8>,
}

impl Default for SubnetOptions {
    fn default() -> Self {
        SubnetOptions {
            table: Box::new([None; 256]),
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
        let s = self.table[usize::from(code)]?;
        let start = s.start as usize + 2;
        self.buf.get(start..start + usize::from(s.len))
    }

    /// The whole TLV of option `code` (`code, len, value...`), ready to copy into a reply.
    #[inline]
    pub fn get_tlv(&self, code: u8) -> Option<&[u8]> {
        let s = self.table[usize::from(code)]?;
        let start = s.start as usize;
        self.buf.get(start..start + usize::from(s.len) + 2)
    }

    #[inline]
    pub fn contains(&self, code: u8) -> bool {
        self.table[usize::from(code)].is_some()
    }

    /// Present option codes in ascending order.
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..=255).filter(move |&c| self.table[usize::from(c)].is_some())
    }

    /// Number of options present.
    pub fn len(&self) -> usize {
        self.table.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.table.iter().all(|s| s.is_none())
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
        // A replaced value stays in the buffer unused; this only happens at load time.
        let start = u32::try_from(self.buf.len()).map_err(|_| OptionError::TooLong(value.len()))?;
        self.buf.push(code);
        self.buf.push(len);
        self.buf.extend_from_slice(value);
        self.table[usize::from(code)] = Some(Slot { start, len });
        Ok(())
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
        assert_eq!(o.len(), 3);
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
