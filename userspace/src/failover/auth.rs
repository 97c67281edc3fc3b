//! Mutual authentication of an xdhcpd failover partner with a pre-shared key
//! (`[failover] auth-key-file`), before any failover message crosses the connection.
//!
//! Right after the TCP connection opens, each side sends a hello and, once it has the
//! partner's hello, a proof:
//!
//! ```text
//! hello = "XDFOAUTH" | version 1 (u8) | sender's role (u8: 0 primary, 1 secondary) | nonce (32 random bytes)
//! proof = HMAC-SHA256(key, "xdhcpd failover auth v1" | sender's role | sender's nonce |
//!                          receiver's nonce | relationship name)
//! ```
//!
//! Each side checks (in constant time) that the partner's proof was made with the key, over
//! both nonces of this connection (no replay of an older connection's proof), in the other
//! role (a proof reflected back to its sender fails) and for this relationship. Only then
//! does the failover engine see the connection; a failure closes it and is logged (rate
//! limited). The key is never sent. Limits: this authenticates the partner when the
//! connection opens; it neither encrypts nor integrity-protects the messages after, so an
//! attacker who can inject into an established TCP stream on the failover segment is not
//! stopped by it (keep the failover link on a trusted segment; TLS is not implemented).
//!
//! [`Handshake`] is the sans-IO core (bytes in, bytes out); [`authenticate`] runs it over a
//! TCP stream with a deadline.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xdhcpd_failover::Role;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"XDFOAUTH";
const VERSION: u8 = 1;
const LABEL: &[u8] = b"xdhcpd failover auth v1";
/// Length of a hello on the wire.
pub(crate) const HELLO_LEN: usize = 8 + 1 + 1 + 32;
/// Length of a proof on the wire.
pub(crate) const PROOF_LEN: usize = 32;
/// The shortest key accepted (characters of the key file, whitespace trimmed).
pub(crate) const MIN_KEY_LEN: usize = 32;
/// The whole exchange must complete within this.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a partner was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("not an xdhcpd authentication hello (is the partner ISC dhcpd? then set partner-software = \"isc-dhcpd\")")]
    NotHello,
    #[error("authentication protocol version {0}, this server speaks {VERSION}")]
    Version(u8),
    #[error("the partner claims the same role as this server")]
    SameRole,
    #[error("the partner's proof does not match: a different auth key (or relationship name)")]
    BadProof,
}

/// One side of one connection's handshake.
pub(crate) struct Handshake<'a> {
    key: &'a [u8],
    name: &'a [u8],
    role: u8,
    nonce: [u8; 32],
    peer_nonce: Option<[u8; 32]>,
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Primary => 0,
        Role::Secondary => 1,
    }
}

impl<'a> Handshake<'a> {
    /// `nonce` must be fresh random bytes for every connection.
    pub(crate) fn new(key: &'a [u8], name: &'a str, role: Role, nonce: [u8; 32]) -> Self {
        Handshake {
            key,
            name: name.as_bytes(),
            role: role_byte(role),
            nonce,
            peer_nonce: None,
        }
    }

    /// What this side sends first.
    pub(crate) fn hello(&self) -> [u8; HELLO_LEN] {
        let mut h = [0u8; HELLO_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[9] = self.role;
        h[10..].copy_from_slice(&self.nonce);
        h
    }

    fn mac(
        &self,
        sender_role: u8,
        sender_nonce: &[u8; 32],
        receiver_nonce: &[u8; 32],
    ) -> HmacSha256 {
        // HMAC takes keys of any length: new_from_slice cannot fail for it.
        let mut m = match HmacSha256::new_from_slice(self.key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        m.update(LABEL);
        m.update(&[sender_role]);
        m.update(sender_nonce);
        m.update(receiver_nonce);
        m.update(self.name);
        m
    }

    /// Takes the partner's hello; returns this side's proof.
    pub(crate) fn on_hello(
        &mut self,
        hello: &[u8; HELLO_LEN],
    ) -> Result<[u8; PROOF_LEN], AuthError> {
        if &hello[..8] != MAGIC {
            return Err(AuthError::NotHello);
        }
        if hello[8] != VERSION {
            return Err(AuthError::Version(hello[8]));
        }
        if hello[9] == self.role || hello[9] > 1 {
            return Err(AuthError::SameRole);
        }
        let mut peer = [0u8; 32];
        peer.copy_from_slice(&hello[10..]);
        self.peer_nonce = Some(peer);
        let tag = self
            .mac(self.role, &self.nonce, &peer)
            .finalize()
            .into_bytes();
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(&tag);
        Ok(proof)
    }

    /// Checks the partner's proof (after [`on_hello`](Self::on_hello)).
    pub(crate) fn check_proof(&self, proof: &[u8; PROOF_LEN]) -> Result<(), AuthError> {
        let Some(peer) = self.peer_nonce else {
            return Err(AuthError::NotHello);
        };
        let peer_role = 1 - self.role;
        self.mac(peer_role, &peer, &self.nonce)
            .verify_slice(proof)
            .map_err(|_| AuthError::BadProof)
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC accepts any key length (RFC 2104 hashes long keys), so this cannot happen.
    panic!("HMAC-SHA256 refused a key")
}

/// Fresh random bytes for a nonce (the kernel's CSPRNG).
pub(crate) fn nonce() -> std::io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

/// Reads the pre-shared key: the file's content without surrounding whitespace, at least
/// [`MIN_KEY_LEN`] bytes, from a file that neither group nor others may read.
pub(crate) fn load_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("failover.auth-key-file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "failover.auth-key-file {}: mode {:o} lets group or others read the key: chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let raw = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("failover.auth-key-file {}: {e}", path.display()))?;
    let key = raw.trim_ascii().to_vec();
    if key.len() < MIN_KEY_LEN {
        anyhow::bail!(
            "failover.auth-key-file {}: the key has {} bytes, at least {MIN_KEY_LEN} are needed \
             (e.g. `openssl rand -hex 32`)",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// Runs the handshake over `stream` within [`HANDSHAKE_TIMEOUT`]; `Err` says why the partner
/// was refused.
pub(crate) async fn authenticate(
    stream: &mut TcpStream,
    key: &[u8],
    name: &str,
    role: Role,
) -> Result<(), String> {
    let n = nonce().map_err(|e| format!("no random nonce: {e}"))?;
    let mut hs = Handshake::new(key, name, role, n);
    let run = async {
        stream
            .write_all(&hs.hello())
            .await
            .map_err(|e| format!("sending hello: {e}"))?;
        let mut hello = [0u8; HELLO_LEN];
        stream
            .read_exact(&mut hello)
            .await
            .map_err(|e| format!("reading the partner's hello: {e}"))?;
        let proof = hs.on_hello(&hello).map_err(|e| e.to_string())?;
        stream
            .write_all(&proof)
            .await
            .map_err(|e| format!("sending proof: {e}"))?;
        let mut theirs = [0u8; PROOF_LEN];
        stream
            .read_exact(&mut theirs)
            .await
            .map_err(|e| format!("reading the partner's proof: {e}"))?;
        hs.check_proof(&theirs).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no authentication within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn run(
        a: &mut Handshake<'_>,
        b: &mut Handshake<'_>,
    ) -> (Result<(), AuthError>, Result<(), AuthError>) {
        let (ha, hb) = (a.hello(), b.hello());
        let pa = a.on_hello(&hb);
        let pb = b.on_hello(&ha);
        match (pa, pb) {
            (Ok(pa), Ok(pb)) => (a.check_proof(&pb), b.check_proof(&pa)),
            (Err(e), _) | (_, Err(e)) => (Err(e.clone()), Err(e)),
        }
    }

    #[test]
    fn failover_auth_same_key_authenticates_both_sides() {
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        let mut b = Handshake::new(KEY, "pair", Role::Secondary, [2; 32]);
        assert_eq!(run(&mut a, &mut b), (Ok(()), Ok(())));
    }

    #[test]
    fn failover_auth_wrong_key_or_name_is_refused_by_both() {
        let other = b"0123456789abcdef0123456789abcdeX";
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        let mut b = Handshake::new(other, "pair", Role::Secondary, [2; 32]);
        assert_eq!(
            run(&mut a, &mut b),
            (Err(AuthError::BadProof), Err(AuthError::BadProof))
        );
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        let mut b = Handshake::new(KEY, "other", Role::Secondary, [2; 32]);
        assert_eq!(
            run(&mut a, &mut b),
            (Err(AuthError::BadProof), Err(AuthError::BadProof))
        );
    }

    #[test]
    fn failover_auth_reflected_or_replayed_proof_is_refused() {
        // Reflection: an attacker without the key sends our own hello back with the other
        // role byte, then echoes our proof.
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        let mut hello = a.hello();
        hello[9] = 1;
        let ours = a.on_hello(&hello).expect("hello accepted");
        assert_eq!(a.check_proof(&ours), Err(AuthError::BadProof));
        // Replay: a proof recorded from an earlier connection (other nonces).
        let mut old_a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        let mut old_b = Handshake::new(KEY, "pair", Role::Secondary, [2; 32]);
        let old_proof = old_b.on_hello(&old_a.hello()).expect("hello");
        let _ = old_a.on_hello(&old_b.hello());
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [9; 32]);
        let _ = a.on_hello(&old_b.hello()).expect("hello");
        assert_eq!(a.check_proof(&old_proof), Err(AuthError::BadProof));
    }

    #[test]
    fn failover_auth_non_hello_and_same_role_are_refused() {
        let mut a = Handshake::new(KEY, "pair", Role::Primary, [1; 32]);
        // What an ISC dhcpd (or any failover peer without the handshake) sends first: a
        // failover message header.
        let mut junk = [0u8; HELLO_LEN];
        junk[..4].copy_from_slice(&[0, 60, 11, 12]);
        assert_eq!(a.on_hello(&junk), Err(AuthError::NotHello));
        let b = Handshake::new(KEY, "pair", Role::Primary, [2; 32]);
        assert_eq!(a.on_hello(&b.hello()), Err(AuthError::SameRole));
        assert_eq!(a.check_proof(&[0; PROOF_LEN]), Err(AuthError::NotHello));
    }

    #[test]
    fn failover_auth_key_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_key(&p).unwrap(), KEY);
        std::fs::write(&p, "short\n").unwrap();
        let e = load_key(&p).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
    }
}
