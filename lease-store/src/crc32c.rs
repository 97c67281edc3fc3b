//! CRC-32C (Castagnoli), for the variable-data handles and side-area chunks: the SSE4.2
//! `crc32` instruction when the CPU has it (8 bytes per instruction: a handle costs a few
//! dozen instructions), else a table.

/// Start value of a running CRC.
#[inline]
pub(crate) fn begin() -> u32 {
    !0
}

/// The CRC of everything fed to `update`.
#[inline]
pub(crate) fn finish(c: u32) -> u32 {
    !c
}

/// CRC-32C of `data`.
#[inline]
pub(crate) fn hash(data: &[u8]) -> u32 {
    finish(update(begin(), data))
}

/// Feeds `data` into the running CRC `c`.
#[inline]
pub(crate) fn update(c: u32, data: &[u8]) -> u32 {
    update_all(c, [data])
}

/// Feeds each of `parts` in turn (one feature check for all).
#[inline]
pub(crate) fn update_all<const N: usize>(c: u32, parts: [&[u8]; N]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            let mut c = c;
            for p in parts {
                // SAFETY: the CPU has SSE4.2 (checked just above).
                c = unsafe { update_sse42(c, p) };
            }
            return c;
        }
    }
    let mut c = c;
    for p in parts {
        c = update_table(c, p);
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_sse42(c: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut c64 = u64::from(c);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        c64 = _mm_crc32_u64(c64, u64::from_le_bytes(b));
    }
    let mut c = c64 as u32;
    let mut r = words.remainder();
    if r.len() >= 4 {
        c = _mm_crc32_u32(c, u32::from_le_bytes([r[0], r[1], r[2], r[3]]));
        r = &r[4..];
    }
    if r.len() >= 2 {
        c = _mm_crc32_u16(c, u16::from_le_bytes([r[0], r[1]]));
        r = &r[2..];
    }
    if let Some(&b) = r.first() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

const POLY: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn update_table(mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlen_crc32c_matches_the_standard_check_value_in_both_forms() {
        // RFC 3720 / the usual check value of "123456789".
        assert_eq!(hash(b"123456789"), 0xe306_9283);
        assert_eq!(finish(update_table(begin(), b"123456789")), 0xe306_9283);
        let long: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let split = update(update(begin(), &long[..13]), &long[13..]);
        assert_eq!(finish(split), finish(update_table(begin(), &long)));
    }
}
