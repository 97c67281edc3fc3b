//! Errors of the XDP loader. Every variant names the interface (or object) and the cause.
//! aya's errors are boxed: they are large and would bloat every `Result` on the map paths.
//! The message includes the cause's whole chain (aya's own messages often keep the errno in
//! a nested source, e.g. "`bpf_link_create` failed"), so the cause is kept in a `cause` field
//! rather than exposed as `source()`, which would print it twice in `{:#}` chains.
use std::path::PathBuf;

/// What went wrong while loading, attaching or driving the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {ifname} not found (in the current network namespace)")]
    InterfaceNotFound { ifname: String },

    #[error("interface name {ifname:?} is not valid (empty, too long, or contains NUL)")]
    InvalidInterfaceName { ifname: String },

    #[error(
        "no eBPF object: run `cargo xtask build-ebpf` or pass --ebpf-object (looked for {})",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoObject { searched: Vec<PathBuf> },

    #[error("reading eBPF object {}: {cause}", .path.display())]
    ReadObject {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("parsing eBPF object {origin} for {ifname}: {}", chain(.cause.as_ref()))]
    ParseObject {
        ifname: String,
        origin: String,
        cause: Box<aya::EbpfError>,
    },

    #[error("eBPF object {origin} has no XDP program `{program}`")]
    ProgramMissing {
        origin: String,
        program: &'static str,
    },

    #[error("eBPF object {origin} has no map `{map}`")]
    MapMissing { origin: String, map: &'static str },

    #[error("map `{map}` in {origin} has an unexpected type or layout: {}", chain(.cause.as_ref()))]
    MapType {
        origin: String,
        map: &'static str,
        cause: Box<aya::maps::MapError>,
    },

    #[error(
        "loading the XDP program for {ifname} into the kernel failed: {}",
        chain(.cause.as_ref())
    )]
    ProgramLoad {
        ifname: String,
        cause: Box<aya::programs::ProgramError>,
    },

    #[error(
        "attach to {ifname} in {mode} mode failed: {}{}",
        chain(.cause.as_ref()),
        busy_hint(.cause.as_ref())
    )]
    Attach {
        ifname: String,
        mode: &'static str,
        cause: Box<aya::programs::ProgramError>,
    },

    #[error(
        "attach to {ifname} failed in driver mode ({}) and in SKB mode ({}){}",
        chain(.driver.as_ref()),
        chain(.skb.as_ref()),
        busy_hint(.driver.as_ref())
    )]
    AttachAuto {
        ifname: String,
        driver: Box<aya::programs::ProgramError>,
        skb: Box<aya::programs::ProgramError>,
    },

    #[error("queue {queue} of {ifname} is out of range: the socket map has {slots} slots")]
    QueueOutOfRange {
        ifname: String,
        queue: u32,
        slots: u32,
    },

    #[error("{op} on map `{map}` for {ifname} failed: {}", chain(.cause.as_ref()))]
    Map {
        ifname: String,
        map: &'static str,
        op: &'static str,
        cause: Box<aya::maps::MapError>,
    },

    #[error("{count} failover partners for {ifname}, but the partner map holds at most {max}")]
    TooManyPartners {
        ifname: String,
        count: usize,
        max: u32,
    },
}

/// `e: its source: its source's source ...`, skipping a source whose text the previous
/// message already contains.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

/// A hint when attaching failed because the interface already has an XDP program
/// (EBUSY from a link in the same mode, EEXIST from one in the other mode).
pub(crate) fn busy_hint(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut next = Some(e);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) {
                return "; another XDP program is already attached to this interface \
                        (see `ip link show` / `bpftool net`)";
            }
        }
        next = cause.source();
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("`bpf_link_create` failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn attach_errors_show_the_errno_from_nested_sources() {
        let cause = Outer(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        let text = chain(&cause);
        assert!(text.starts_with("`bpf_link_create` failed: "), "{text}");
        assert!(text.contains("os error 95"), "{text}");
        assert_eq!(busy_hint(&cause), "");
        let busy = Outer(std::io::Error::from_raw_os_error(libc::EBUSY));
        assert!(busy_hint(&busy).contains("already attached"));
    }
}
