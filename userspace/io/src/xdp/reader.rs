//! A second handle on the XDP program's counter map, for a reader on another thread (the
//! `/metrics` scraper) while the daemon's main loop keeps the [`XdpSteering`] itself.

use std::os::fd::AsFd;

use aya::maps::{IterableMap, Map, MapData, PerCpuArray};
use xdhcpd_common::COUNTER_COUNT;

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
    /// The counters of each CPU (index = `Counter as usize`), CPUs in kernel order.
    pub fn per_cpu(&self) -> Result<Vec<[u64; COUNTER_COUNT as usize]>, XdpError> {
        let mut out: Vec<[u64; COUNTER_COUNT as usize]> = Vec::new();
        for index in 0..COUNTER_COUNT {
            let values = self.map.get(&index, 0).map_err(|source| XdpError::Map {
                ifname: self.ifname.clone(),
                map: MAP_COUNTERS,
                op: "reading counters",
                cause: Box::new(source),
            })?;
            if out.len() < values.len() {
                out.resize(values.len(), [0; COUNTER_COUNT as usize]);
            }
            for (cpu, v) in values.iter().enumerate() {
                out[cpu][index as usize] = *v;
            }
        }
        Ok(out)
    }
}
