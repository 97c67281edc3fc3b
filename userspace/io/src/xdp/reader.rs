//! A second handle on the XDP program's counter map, for a reader on another thread (the
//! `/metrics` scraper) while the daemon's main loop keeps the [`XdpSteering`] itself.

use std::os::fd::AsFd;

use aya::maps::{IterableMap, Map, MapData, PerCpuArray};
use xdhcpd_common::{counter_index, COUNTER_COUNT};

use super::{XdpError, XdpSteering};
use xdhcpd_common::MAP_COUNTERS;

/// Reads the per-CPU counters (one kernel map, its own file descriptor).
pub struct CounterReader {
    ifname: String,
    map: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for CounterReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterReader")
            .field("ifname", &self.ifname)
            .finish_non_exhaustive()
    }
}

impl XdpSteering {
    /// A reader of the counter map that can live on another thread.
    pub fn counter_reader(&self) -> Result<CounterReader, XdpError> {
        let err = |op, source| XdpError::Map {
            ifname: self.ifname.clone(),
            map: MAP_COUNTERS,
            op,
            cause: Box::new(source),
        };
        let fd = IterableMap::map(&self.counters)
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| {
                err(
                    "duplicating the map descriptor",
                    aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                        call: "dup",
                        io_error: e,
                    }),
                )
            })?;
        let data = MapData::from_fd(fd).map_err(|e| err("opening the map by descriptor", e))?;
        let map = PerCpuArray::try_from(Map::PerCpuArray(data))
            .map_err(|e| err("typing the counter map", e))?;
        Ok(CounterReader {
            ifname: self.ifname.clone(),
            map,
        })
    }
}

impl CounterReader {
    /// The counters of each RX queue (index = `Counter as usize`), summed over the CPUs, for
    /// the interface's RX queues now (queue order).
    pub fn per_queue(&self) -> Result<Vec<[u64; COUNTER_COUNT as usize]>, XdpError> {
        let queues = super::counted_queues(&self.ifname);
        let mut out = vec![[0u64; COUNTER_COUNT as usize]; queues as usize];
        for (q, row) in (0u32..).zip(out.iter_mut()) {
            for (c, v) in (0u32..).zip(row.iter_mut()) {
                let values =
                    self.map
                        .get(&counter_index(q, c), 0)
                        .map_err(|source| XdpError::Map {
                            ifname: self.ifname.clone(),
                            map: MAP_COUNTERS,
                            op: "reading counters",
                            cause: Box::new(source),
                        })?;
                *v = values.iter().fold(0u64, |acc, x| acc.wrapping_add(*x));
            }
        }
        Ok(out)
    }
}
