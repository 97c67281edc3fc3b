//! One's complement sums (RFC 1071) for the IPv4 header and UDP checksums.
//!
//! The sum is taken over 64-bit native-order words: a one's complement sum does not depend
//! on byte order as long as every 16-bit word keeps its two bytes together, and a
//! native-order result stored back with `to_ne_bytes` is the right wire value. Words are
//! added into a 128-bit accumulator (one add and one add-with-carry each, four per loop
//! step), folded once at the end.

/// Adds `data` to the unfolded sum `acc` (any value; 0 to start). `data` must start at an
/// even offset of what is being summed. Fold the result with [`fold`].
#[inline]
pub(super) fn sum(acc: u64, data: &[u8]) -> u64 {
    let (words, tail) = data.as_chunks::<8>();
    let (quads, words) = words.as_chunks::<4>();
    let mut s = u128::from(acc);
    for q in quads {
        s += u128::from(u64::from_ne_bytes(q[0]))
            + u128::from(u64::from_ne_bytes(q[1]))
            + u128::from(u64::from_ne_bytes(q[2]))
            + u128::from(u64::from_ne_bytes(q[3]));
    }
    for w in words {
        s += u128::from(u64::from_ne_bytes(*w));
    }
    // 0 to 7 bytes left, at an offset that is a multiple of 8: a 4-byte, a 2-byte and a
    // 1-byte piece, each at an even offset; a last odd byte is the high-order byte of a
    // word padded with zero (its first byte in wire order).
    let mut t = tail;
    let mut rest = 0u64;
    if let Some((w, r)) = t.split_first_chunk::<4>() {
        rest += u64::from(u32::from_ne_bytes(*w));
        t = r;
    }
    if let Some((w, r)) = t.split_first_chunk::<2>() {
        rest += u64::from(u16::from_ne_bytes(*w));
        t = r;
    }
    if let [b] = t {
        rest += u64::from(u16::from_ne_bytes([*b, 0]));
    }
    s += u128::from(rest);
    // 2^64 = 1 in one's complement arithmetic: add the high half back in.
    let (lo, carry) = (s as u64).overflowing_add((s >> 64) as u64);
    lo + u64::from(carry)
}

/// Adds one 8-byte word to the unfolded sum `acc` (end-around carry): the fixed-size
/// headers' way, with no loop.
#[inline(always)]
pub(super) fn add(acc: u64, word: [u8; 8]) -> u64 {
    let (s, carry) = acc.overflowing_add(u64::from_ne_bytes(word));
    s + u64::from(carry)
}

/// The sum of a 20-byte IPv4 header without options (two words and a half).
#[inline(always)]
pub(super) fn sum_ipv4_header(h: &[u8; 20]) -> u64 {
    let last = u64::from(u32::from_ne_bytes([h[16], h[17], h[18], h[19]]));
    add(
        add(last, [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]),
        [h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]],
    )
}

/// Folds a [`sum`] to 16 bits (native order, not inverted). 0 only for a sum of 0.
#[inline]
pub(super) fn fold(s: u64) -> u16 {
    let (x, c) = (s as u32).overflowing_add((s >> 32) as u32);
    let x = x + u32::from(c);
    let (y, c) = (x as u16).overflowing_add((x >> 16) as u16);
    y + u16::from(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 the plain way: big-endian 16-bit words, end-around carry.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn checksum_wide_words_match_rfc1071_every_length_and_carry() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            for fill in [None, Some(0xffu8), Some(0)] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        fill.unwrap_or(x as u8)
                    })
                    .collect();
                let ours = u16::from_be_bytes(fold(sum(0, &data)).to_ne_bytes());
                assert_eq!(ours, naive(&data), "length {len} fill {fill:?}");
                // Split sums add up (the UDP path sums the pseudo-header then the datagram).
                let cut = (len / 2) & !1;
                let split = sum(sum(0, &data[..cut]), &data[cut..]);
                assert_eq!(fold(split), fold(sum(0, &data)), "length {len} split");
            }
        }
        // The fixed-size helpers agree with the loop.
        let mut h = [0u8; 20];
        for (i, b) in h.iter_mut().enumerate() {
            *b = 0xf0 ^ (i as u8 * 37);
        }
        assert_eq!(fold(sum_ipv4_header(&h)), fold(sum(0, &h)));
        let w = [0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8];
        assert_eq!(fold(add(u64::MAX - 3, w)), fold(sum(u64::MAX - 3, &w)));
        // The accumulator's carries: many all-ones words.
        let ones = vec![0xffu8; 4096];
        assert_eq!(fold(sum(u64::MAX, &ones)), 0xffff);
    }
}
