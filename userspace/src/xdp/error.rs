//! Errors of the XDP loader. Every variant names the interface (or object) and the cause.
//! aya's errors are boxed: they are large and would bloat every `Result` on the map paths.
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

    #[error("reading eBPF object {}: {source}", .path.display())]
    ReadObject {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("parsing eBPF object {origin} for {ifname}: {source}")]
    ParseObject {
        ifname: String,
        origin: String,
        #[source]
        source: Box<aya::EbpfError>,
    },

    #[error("eBPF object {origin} has no XDP program `{program}`")]
    ProgramMissing {
        origin: String,
        program: &'static str,
    },

    #[error("eBPF object {origin} has no map `{map}`")]
    MapMissing { origin: String, map: &'static str },

    #[error("map `{map}` in {origin} has an unexpected type or layout: {source}")]
    MapType {
        origin: String,
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("loading the XDP program for {ifname} into the kernel failed: {source}")]
    ProgramLoad {
        ifname: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("attach to {ifname} in {mode} mode failed: {source}")]
    Attach {
        ifname: String,
        mode: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("attach to {ifname} failed in driver mode ({driver}) and in SKB mode ({skb})")]
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

    #[error("{op} on map `{map}` for {ifname} failed: {source}")]
    Map {
        ifname: String,
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("{count} failover partners for {ifname}, but the partner map holds at most {max}")]
    TooManyPartners {
        ifname: String,
        count: usize,
        max: u32,
    },
}
