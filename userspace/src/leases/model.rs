//! What the importers produce: one lease per address, in a neutral form,
//! plus the positioned parse error shared by the ISC and Kea readers.

use std::fmt;
use std::net::Ipv4Addr;

use lease_store::{ClientKey, Lease, LeaseState, Owner};

/// A lease read from another server's file. Times are unix seconds
/// (`u32::MAX` = never); 0 = absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLease {
    pub addr: Ipv4Addr,
    /// 1-based line where the declaration that won starts (later ones override earlier ones).
    pub line: usize,
    pub state: LeaseState,
    pub owner: Owner,
    /// Hardware type (1 = Ethernet) of `hw`.
    pub htype: u8,
    /// Hardware address; empty when the file has none.
    pub hw: Vec<u8>,
    /// DHCP option 61 bytes (type byte included); empty when the file has none.
    pub client_id: Vec<u8>,
    /// Client host name (read but not stored: the lease table has no field for it).
    pub hostname: Option<String>,
    pub start: u32,
    pub expiry: u32,
    pub cltt: u32,
    pub lease_time: u32,
    /// ISC failover: expiry the peer has been told (`tstp`).
    pub tstp: u32,
    /// ISC failover: expiry the peer has acknowledged (`tsfp`).
    pub tsfp: u32,
    /// ISC failover: actual time sent from the peer (`atsfp`; not stored, no field).
    pub atsfp: u32,
    /// Kea `subnet_id` (informational).
    pub subnet_id: Option<u32>,
    /// Kea: a line with `valid_lifetime` 0 (Kea's record of a deleted lease).
    pub deleted: bool,
}

impl SourceLease {
    /// An empty free lease for `addr` declared at `line`.
    pub fn new(addr: Ipv4Addr, line: usize) -> Self {
        SourceLease {
            addr,
            line,
            state: LeaseState::Free,
            owner: Owner::Primary,
            htype: 1,
            hw: Vec::new(),
            client_id: Vec::new(),
            hostname: None,
            start: 0,
            expiry: 0,
            cltt: 0,
            lease_time: 0,
            tstp: 0,
            tsfp: 0,
            atsfp: 0,
            subnet_id: None,
            deleted: false,
        }
    }

    /// The identity xdhcpd keys the client by: option 61 if present, else
    /// hardware type + address (the same rule as the engine).
    pub fn client_key(&self) -> ClientKey {
        if !self.client_id.is_empty() {
            ClientKey::from_client_id(&self.client_id)
        } else if !self.hw.is_empty() {
            ClientKey::from_hw(self.htype, &self.hw)
        } else {
            ClientKey::NONE
        }
    }

    /// The record to store. Free and Backup records carry no client.
    /// Failover fields: `tstp` is also the potential expiry we told the
    /// peer, `tsfp` the one it acknowledged.
    pub fn to_lease(&self) -> Lease {
        let mut l = Lease::free(self.addr);
        l.state = self.state;
        l.owner = self.owner;
        if matches!(self.state, LeaseState::Free | LeaseState::Backup) {
            return l;
        }
        l.htype = if self.hw.is_empty() { 0 } else { self.htype };
        let n = self.hw.len().min(16);
        l.hlen = n as u8;
        l.chaddr[..n].copy_from_slice(&self.hw[..n]);
        l.client = self.client_key();
        l.start = self.start;
        l.expiry = self.expiry;
        l.cltt = self.cltt;
        l.lease_time = self.lease_time;
        l.tstp = self.tstp;
        l.tsfp = self.tsfp;
        l.potential_expiry = self.tstp;
        l.acked_potential_expiry = self.tsfp;
        l
    }

    /// The host name the file gives the lease (empty: none), for the lease's variable data.
    pub fn host_name(&self) -> &[u8] {
        if matches!(self.state, LeaseState::Free | LeaseState::Backup) {
            return &[];
        }
        self.hostname
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or_default()
    }
}

/// A problem in an input file, with its position (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Parses colon-separated hex octets (`00:0c:29:ab:cd:ef`; also accepts
/// single-digit octets as ISC writes `0:c:29:..` in old files).
pub fn parse_colon_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(':')
        .map(|p| {
            if p.is_empty() || p.len() > 2 {
                return Err(format!("`{s}` is not colon-separated hex octets"));
            }
            u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not colon-separated hex octets"))
        })
        .collect()
}

/// `aa:bb:cc` for bytes.
pub fn colon_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        push_hex(&mut s, *x);
    }
    s
}

pub(crate) fn push_hex(s: &mut String, x: u8) {
    const H: &[u8; 16] = b"0123456789abcdef";
    s.push(H[usize::from(x >> 4)] as char);
    s.push(H[usize::from(x & 15)] as char);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_hex_round_trip_and_errors() {
        assert_eq!(parse_colon_hex("00:0c:0a:ff"), Ok(vec![0, 12, 10, 255]));
        assert_eq!(parse_colon_hex("0:c:a"), Ok(vec![0, 12, 10]));
        assert_eq!(colon_hex(&[0, 12, 255]), "00:0c:ff");
        assert!(parse_colon_hex("00:zz").is_err());
        assert!(parse_colon_hex("00::01").is_err());
        assert!(parse_colon_hex("123").is_err());
    }
}
