//! Tools around xdhcpd: the DHCPv4 load generator (`xdhcp-loadgen`) and the
//! network-namespace helpers its tests (and the benchmark harness) use.

pub mod loadgen;
pub mod netns;
