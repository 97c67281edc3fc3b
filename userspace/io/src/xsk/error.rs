//! Errors of the AF_XDP layer: what failed, on which interface and queue,
//! with the errno by name and a hint at the usual cause.

use std::fmt;

use super::BindMode;
use crate::sys::errno_text;

/// The step of opening or driving an AF_XDP socket that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskOp {
    LookupInterface,
    MapUmem,
    CreateSocket,
    RegisterUmem,
    SetRingSize(&'static str),
    GetMmapOffsets,
    MapRing(&'static str),
    Bind(BindMode),
    QueryOptions,
    SetBusyPoll,
    Transmit,
    WakeRx,
    Poll,
    Statistics,
}

impl fmt::Display for XskOp {
    /// Written so that " <ifname> queue <q>" reads on naturally.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XskOp::LookupInterface => write!(f, "look up interface"),
            XskOp::MapUmem => write!(f, "map UMEM area for"),
            XskOp::CreateSocket => write!(f, "create AF_XDP socket for"),
            XskOp::RegisterUmem => write!(f, "register UMEM (XDP_UMEM_REG) for"),
            XskOp::SetRingSize(r) => write!(f, "set {r} ring size for"),
            XskOp::GetMmapOffsets => write!(f, "read ring offsets (XDP_MMAP_OFFSETS) for"),
            XskOp::MapRing(r) => write!(f, "mmap {r} ring for"),
            XskOp::Bind(BindMode::ZeroCopy) => write!(f, "bind AF_XDP socket (zero-copy) to"),
            XskOp::Bind(BindMode::Copy) => write!(f, "bind AF_XDP socket (copy mode) to"),
            XskOp::Bind(BindMode::Auto) => write!(f, "bind AF_XDP socket to"),
            XskOp::QueryOptions => write!(f, "query XDP_OPTIONS for"),
            XskOp::SetBusyPoll => write!(f, "enable busy polling for"),
            XskOp::Transmit => write!(f, "kick transmit (sendto) on"),
            XskOp::WakeRx => write!(f, "wake receive (recvfrom) on"),
            XskOp::Poll => write!(f, "poll AF_XDP socket on"),
            XskOp::Statistics => write!(f, "read XDP_STATISTICS for"),
        }
    }
}

impl XskOp {
    /// The usual cause of `errno` at this step, if we know one.
    pub fn hint(&self, errno: i32) -> Option<&'static str> {
        Some(match (self, errno) {
            (XskOp::LookupInterface, libc::ENODEV) => "no such interface in this network namespace",
            (XskOp::CreateSocket, libc::EAFNOSUPPORT) => "kernel built without CONFIG_XDP_SOCKETS",
            (XskOp::CreateSocket, libc::EPERM) => "needs CAP_NET_RAW",
            (XskOp::RegisterUmem, libc::ENOMEM) | (XskOp::MapUmem, libc::ENOMEM) => {
                "cannot allocate or pin the UMEM: memory cgroup or RLIMIT_MEMLOCK"
            }
            (XskOp::RegisterUmem, libc::EINVAL) => {
                "frame size or area rejected (frame size must be a power of two, 2048..=page size)"
            }
            (XskOp::SetRingSize(_), libc::EINVAL) => "ring size must be a power of two",
            (XskOp::Bind(_), libc::EBUSY) => "another socket or program holds it",
            (XskOp::Bind(BindMode::ZeroCopy), libc::EOPNOTSUPP) => {
                "the driver has no zero-copy AF_XDP support"
            }
            (XskOp::Bind(_), libc::EINVAL) => {
                "queue id beyond the interface's queues, or flags rejected"
            }
            (XskOp::Bind(_), libc::ENETDOWN) | (XskOp::Transmit, libc::ENETDOWN) => {
                "interface is down"
            }
            (XskOp::Bind(_), libc::ENODEV) => "interface vanished",
            (XskOp::Transmit, libc::ENXIO) | (XskOp::WakeRx, libc::ENXIO) => "socket is not bound",
            (_, libc::EPERM) => "needs CAP_NET_ADMIN / CAP_NET_RAW",
            _ => return None,
        })
    }
}

/// An AF_XDP failure, naming interface and queue.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("invalid AF_XDP configuration for {ifname} queue {queue}: {reason}")]
    Config {
        ifname: String,
        queue: u32,
        reason: String,
    },
    #[error("{op} {ifname} queue {queue}: {}", errno_text(*errno, op.hint(*errno)))]
    Os {
        op: XskOp,
        ifname: String,
        queue: u32,
        errno: i32,
    },
}

impl XskError {
    /// The errno, for OS failures.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XskError::Os { errno, .. } => Some(*errno),
            XskError::Config { .. } => None,
        }
    }

    /// The step that failed, for OS failures.
    pub fn op(&self) -> Option<XskOp> {
        match self {
            XskError::Os { op, .. } => Some(*op),
            XskError::Config { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_busy_message() {
        let e = XskError::Os {
            op: XskOp::Bind(BindMode::Copy),
            ifname: "veth0".into(),
            queue: 1,
            errno: libc::EBUSY,
        };
        assert_eq!(
            e.to_string(),
            "bind AF_XDP socket (copy mode) to veth0 queue 1: EBUSY (another socket or program holds it)"
        );
        assert_eq!(e.errno(), Some(libc::EBUSY));
    }

    #[test]
    fn unknown_errno_falls_back_to_strerror() {
        let e = XskError::Os {
            op: XskOp::Statistics,
            ifname: "eth0".into(),
            queue: 0,
            errno: libc::EFAULT,
        };
        assert_eq!(
            e.to_string(),
            "read XDP_STATISTICS for eth0 queue 0: EFAULT (Bad address)"
        );
    }
}
