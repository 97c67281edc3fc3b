//! The client side of server-initiated reconfiguration (`--scenario forcerenew`): RFC 3203
//! DHCPFORCERENEW authenticated with the RFC 6704 nonce, written from the RFCs (RFC 6704
//! §3, RFC 3118 §2 / §5) with RustCrypto's HMAC and MD5, apart from the server's code.
//!
//! - A client says it can verify a FORCERENEW nonce with option 145 listing algorithm 1
//!   (HMAC-MD5) in its DISCOVER and REQUEST ([`NONCE_CAPABLE`]).
//! - The server's ACK then carries option 90: protocol 3, algorithm 1, RDM 0, an 8-byte
//!   replay detection value, and the authentication information: type 1 and the 16-byte
//!   nonce (the key) ([`parse_ack_key`]). The client keeps it with the lease.
//! - A FORCERENEW carries option 90 with type 2 and a 16-byte HMAC-MD5 under that key,
//!   computed over the whole DHCP message with the HMAC field, `hops` and `giaddr` as zero
//!   (RFC 3118 §2: relays change the last two). The client drops a FORCERENEW whose digest
//!   does not match ([`verify`]) and one whose replay value is not above the last it took
//!   (RDM 0, monotonically increasing).
//!
//! The keys live in a [`KeyBook`] every thread reads: a FORCERENEW is verified by the thread
//! whose socket received it, which need not own the client.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, OP_BOOTREPLY};

/// Option 145's value: the client supports algorithm 1, HMAC-MD5 (RFC 6704 §4).
pub const NONCE_CAPABLE: [u8; 1] = [ALG_HMAC_MD5];

/// RFC 3118 protocol 3 (the reconfigure key protocol that RFC 6704 reuses).
pub const PROTO_RECONFIGURE_KEY: u8 = 3;
/// Algorithm 1: HMAC-MD5.
pub const ALG_HMAC_MD5: u8 = 1;
/// RDM 0: the replay detection value increases monotonically.
pub const RDM_MONOTONIC: u8 = 0;
/// Authentication information type 1: the forcerenew nonce value (in an ACK).
pub const INFO_NONCE_VALUE: u8 = 1;
/// Authentication information type 2: an HMAC-MD5 digest (in a FORCERENEW).
pub const INFO_HMAC_MD5: u8 = 2;
/// Option 90's length in both uses: protocol, algorithm, RDM, replay (8), type, 16 bytes.
pub const AUTH_LEN: usize = 3 + 8 + 1 + 16;

/// Offsets in a DHCP message (RFC 2131 §2).
const HOPS: usize = 3;
const GIADDR: std::ops::Range<usize> = 24..28;

/// What option 90 of a FORCERENEW says about it, checked against the client's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrAuth {
    /// Protocol 3 / HMAC-MD5 / RDM 0 and the digest matches the client's key.
    Verified { replay: u64 },
    /// The digest does not match the client's key.
    BadDigest,
    /// The client has no key (its ACK carried none).
    NoKey,
    /// No option 90 at all (an unauthenticated FORCERENEW).
    Missing,
    /// Option 90 of another protocol, algorithm, RDM or length (e.g. an RFC 3118 token).
    Unsupported,
}

/// The nonce and replay value an ACK's option 90 carries, if it is an RFC 6704 key.
pub fn parse_ack_key(val: &[u8]) -> Option<([u8; 16], u64)> {
    if val.len() != AUTH_LEN
        || val[0] != PROTO_RECONFIGURE_KEY
        || val[1] != ALG_HMAC_MD5
        || val[2] != RDM_MONOTONIC
        || val[11] != INFO_NONCE_VALUE
    {
        return None;
    }
    let replay = u64::from_be_bytes(val[3..11].try_into().ok()?);
    let key: [u8; 16] = val[12..28].try_into().ok()?;
    Some((key, replay))
}

/// Verifies the FORCERENEW `msg` (the whole DHCP message as received) under `key`.
pub fn verify(msg: &[u8], key: Option<&[u8; 16]>) -> FrAuth {
    let Ok(m) = Message::new_checked(msg) else {
        return FrAuth::Unsupported;
    };
    let mut found = None;
    for item in m.options() {
        let Ok((code, val, offset)) = item else {
            return FrAuth::Unsupported;
        };
        if code == opt::AUTHENTICATION {
            found = Some((val, offset));
            break;
        }
    }
    let Some((val, offset)) = found else {
        return FrAuth::Missing;
    };
    if val.len() != AUTH_LEN
        || val[0] != PROTO_RECONFIGURE_KEY
        || val[1] != ALG_HMAC_MD5
        || val[2] != RDM_MONOTONIC
        || val[11] != INFO_HMAC_MD5
    {
        return FrAuth::Unsupported;
    }
    let Some(key) = key else {
        return FrAuth::NoKey;
    };
    // The digest's place in the message: after code, length and the 12 bytes before it.
    let at = offset + 2 + 12;
    let Some(digest) = msg.get(at..at + 16) else {
        return FrAuth::Unsupported;
    };
    let Ok(mut mac) = <Hmac<Md5> as KeyInit>::new_from_slice(key) else {
        return FrAuth::Unsupported;
    };
    mac.update(&msg[..HOPS]);
    mac.update(&[0]);
    mac.update(&msg[HOPS + 1..GIADDR.start]);
    mac.update(&[0; 4]);
    mac.update(&msg[GIADDR.end..at]);
    mac.update(&[0; 16]);
    mac.update(&msg[at + 16..]);
    if mac.verify_slice(digest).is_err() {
        return FrAuth::BadDigest;
    }
    let replay = u64::from_be_bytes([
        val[3], val[4], val[5], val[6], val[7], val[8], val[9], val[10],
    ]);
    FrAuth::Verified { replay }
}

/// Whether `msg` is a DHCPFORCERENEW (a BOOTREPLY with option 53 = 9), and its xid.
pub fn is_forcerenew(msg: &[u8]) -> Option<u32> {
    let m = Message::new_checked(msg).ok()?;
    if m.op() != OP_BOOTREPLY {
        return None;
    }
    let s = m.summary().ok()?;
    (s.message_type == Some(MessageType::ForceRenew)).then(|| m.xid())
}

/// Every client's reconfigure key, readable by every thread: written by the client's owner
/// thread when it takes an ACK, read by whichever thread receives a FORCERENEW for it.
/// Three words per client: the key's halves and a presence flag.
pub struct KeyBook {
    words: Box<[AtomicU64]>,
}

impl KeyBook {
    /// Room for `clients` keys (0 when the scenario keeps none).
    pub fn new(clients: usize) -> Self {
        KeyBook {
            words: (0..clients * 3).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Stores `client`'s key.
    pub fn set(&self, client: u32, key: &[u8; 16]) {
        let i = client as usize * 3;
        if let Some(w) = self.words.get(i..i + 3) {
            let (a, b) = key.split_at(8);
            w[0].store(u64::from_be_bytes(a.try_into().unwrap_or([0; 8])), Relaxed);
            w[1].store(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])), Relaxed);
            w[2].store(1, Relaxed);
        }
    }

    /// `client`'s key, if its ACK gave one.
    pub fn get(&self, client: u32) -> Option<[u8; 16]> {
        let i = client as usize * 3;
        let w = self.words.get(i..i + 3)?;
        if w[2].load(Relaxed) == 0 {
            return None;
        }
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&w[0].load(Relaxed).to_be_bytes());
        k[8..].copy_from_slice(&w[1].load(Relaxed).to_be_bytes());
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xdhcpd_dhcpv4::engine::reconfigure::{write_forcerenew, Auth, ForceRenew};

    const KEY: [u8; 16] = *b"0123456789abcdef";

    /// A FORCERENEW as xdhcpd writes it (the other implementation: the two must agree).
    fn server_forcerenew(giaddr: Ipv4Addr, key: [u8; 16], replay: u64) -> Vec<u8> {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[2, 0x4c, 0, 0, 0, 7]);
        let fr = ForceRenew {
            server_id: Ipv4Addr::new(10, 77, 0, 1),
            client: Ipv4Addr::new(10, 77, 128, 9),
            htype: 1,
            hlen: 6,
            chaddr,
            xid: 0x0100_0007,
            giaddr,
            relay_info: if giaddr.is_unspecified() {
                &[]
            } else {
                &[1, 4, 0, 0, 0, 7]
            },
            replay,
            auth: Auth::Nonce(key),
        };
        let mut buf = [0u8; 600];
        let n = write_forcerenew(&mut buf, &fr).expect("room for a FORCERENEW");
        buf[..n].to_vec()
    }

    #[test]
    fn forcerenew_nonce_digest_of_the_server_verifies_direct_and_relayed() {
        let m = server_forcerenew(Ipv4Addr::UNSPECIFIED, KEY, 42);
        assert_eq!(is_forcerenew(&m), Some(0x0100_0007));
        assert_eq!(verify(&m, Some(&KEY)), FrAuth::Verified { replay: 42 });
        // Relayed: giaddr set by the server, hops raised by a relay: both outside the digest.
        let mut r = server_forcerenew(Ipv4Addr::new(10, 77, 0, 2), KEY, 43);
        r[HOPS] = 3;
        assert_eq!(verify(&r, Some(&KEY)), FrAuth::Verified { replay: 43 });
    }

    #[test]
    fn forcerenew_nonce_wrong_key_tampered_or_unsigned_is_refused() {
        let m = server_forcerenew(Ipv4Addr::UNSPECIFIED, KEY, 42);
        let mut other = KEY;
        other[0] ^= 1;
        assert_eq!(verify(&m, Some(&other)), FrAuth::BadDigest);
        assert_eq!(verify(&m, None), FrAuth::NoKey);
        // Any byte the digest covers: ciaddr, chaddr, the padding after END.
        for at in [12, 28, m.len() - 1] {
            let mut t = m.clone();
            t[at] ^= 0x80;
            assert_eq!(verify(&t, Some(&KEY)), FrAuth::BadDigest, "byte {at}");
        }
        // The replay value is covered too.
        let mut t = m.clone();
        let opt90 = t
            .windows(3)
            .position(|w| w == [90, AUTH_LEN as u8, PROTO_RECONFIGURE_KEY])
            .expect("option 90");
        t[opt90 + 2 + 10] ^= 1;
        assert_eq!(verify(&t, Some(&KEY)), FrAuth::BadDigest);
        // An RFC 3118 token is not what a nonce-capable client takes.
        let mut chaddr = [0u8; 16];
        chaddr[0] = 2;
        let fr = ForceRenew {
            server_id: Ipv4Addr::new(10, 77, 0, 1),
            client: Ipv4Addr::new(10, 77, 128, 9),
            htype: 1,
            hlen: 6,
            chaddr,
            xid: 1,
            giaddr: Ipv4Addr::UNSPECIFIED,
            relay_info: &[],
            replay: 1,
            auth: Auth::Token(b"tok"),
        };
        let mut buf = [0u8; 600];
        let n = write_forcerenew(&mut buf, &fr).expect("room");
        assert_eq!(verify(&buf[..n], Some(&KEY)), FrAuth::Unsupported);
        let fr = ForceRenew {
            auth: Auth::None,
            ..fr
        };
        let n = write_forcerenew(&mut buf, &fr).expect("room");
        assert_eq!(verify(&buf[..n], Some(&KEY)), FrAuth::Missing);
        // Garbage and truncations never panic.
        for cut in [0, 10, 240, 250, m.len() - 5] {
            let _ = verify(&m[..cut], Some(&KEY));
        }
    }

    #[test]
    fn forcerenew_ack_key_option_parsed_per_rfc6704() {
        let mut v = [0u8; AUTH_LEN];
        v[0] = PROTO_RECONFIGURE_KEY;
        v[1] = ALG_HMAC_MD5;
        v[3..11].copy_from_slice(&7u64.to_be_bytes());
        v[11] = INFO_NONCE_VALUE;
        v[12..].copy_from_slice(&KEY);
        assert_eq!(parse_ack_key(&v), Some((KEY, 7)));
        let mut w = v;
        w[11] = INFO_HMAC_MD5;
        assert_eq!(parse_ack_key(&w), None);
        assert_eq!(parse_ack_key(&v[..20]), None);
        let book = KeyBook::new(4);
        assert_eq!(book.get(2), None);
        book.set(2, &KEY);
        assert_eq!(book.get(2), Some(KEY));
        assert_eq!(book.get(9), None);
    }
}
