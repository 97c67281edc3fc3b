//! A small IPv4 network type (address + prefix length).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network such as `10.77.0.0/16`.
///
/// Invariant: `prefix <= 32` and the host bits of `addr` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// `None` when `prefix > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let net = Ipv4Net { addr, prefix };
        (u32::from(addr) & !net.mask_u32() == 0).then_some(net)
    }

    /// The network containing `addr` with the host bits cleared (`prefix` clamped to 32).
    pub fn truncating(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let mask = mask_of(prefix);
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    /// Network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_u32())
    }

    pub fn mask_u32(&self) -> u32 {
        mask_of(self.prefix)
    }

    /// The all-ones host address (equals the address itself for a /32).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last_u32())
    }

    pub fn first_u32(&self) -> u32 {
        u32::from(self.addr)
    }

    pub fn last_u32(&self) -> u32 {
        u32::from(self.addr) | !self.mask_u32()
    }

    /// Number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_u32() == u32::from(self.addr)
    }

    /// True when the network and broadcast addresses are not usable by hosts
    /// (prefix <= 30; /31 and /32 have no such reserved addresses, RFC 3021).
    pub fn has_reserved_ends(&self) -> bool {
        self.prefix <= 30
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.first_u32() <= other.last_u32() && other.first_u32() <= self.last_u32()
    }
}

fn mask_of(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetParseError {
    /// Not of the form `a.b.c.d/n` with n in 0..=32.
    Syntax,
    /// Host bits set; carries the network the user most likely meant.
    HostBits(Ipv4Net),
}

impl FromStr for Ipv4Net {
    type Err = NetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.trim().split_once('/').ok_or(NetParseError::Syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| NetParseError::Syntax)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NetParseError::Syntax);
        }
        let prefix: u8 = p.parse().map_err(|_| NetParseError::Syntax)?;
        if prefix > 32 {
            return Err(NetParseError::Syntax);
        }
        Ipv4Net::new(addr, prefix).ok_or(NetParseError::HostBits(Ipv4Net::truncating(addr, prefix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let n: Ipv4Net = "10.77.0.0/16".parse().unwrap();
        assert_eq!(n.mask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 77, 255, 255));
        assert!(n.contains(Ipv4Addr::new(10, 77, 3, 4)));
        assert!(!n.contains(Ipv4Addr::new(10, 78, 0, 0)));
        assert_eq!(n.size(), 65536);
        assert_eq!(n.to_string(), "10.77.0.0/16");
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.mask_u32(), 0);
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let host: Ipv4Net = "10.0.0.1/32".parse().unwrap();
        assert_eq!(host.broadcast(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(!host.has_reserved_ends());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            "10.0.0.5/24".parse::<Ipv4Net>(),
            Err(NetParseError::HostBits("10.0.0.0/24".parse().unwrap()))
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "10.0.0.0/+8",
            "x/8",
        ] {
            assert_eq!(bad.parse::<Ipv4Net>(), Err(NetParseError::Syntax), "{bad}");
        }
    }
}
