//! `LeaseTable::open` on damaged lease files.
//!
//! A valid small file (two pools, leases in every state, a failover area, an undo copy) is
//! made once; each input applies byte edits to it, can recompute the checksums afterwards
//! (so edits also reach the record and header checks behind the CRCs), can cut or extend
//! the file, and opens it with the same or a changed pool configuration. Half of the leases
//! hold a 120-byte option 82, a host name and a vendor class in the side area
//! (`<file>.ext`), which gets its own edits (with its chunk checksums recomputed or not), or
//! is missing. `open` must return a table or a clean error, never panic; an opened table must
//! agree with a recount of its records and must serve an allocation, an update and a flush.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use lease_store::{
    ext_path, Alloc, ClientKey, LeaseState, LeaseTable, OpenOptions, Owner, PoolSpec,
};
use libfuzzer_sys::fuzz_target;
use xdhcpd_fuzz::scratch_dir;

const NOW: u32 = 1_800_000_000;
const RECORD: usize = 128;
const POOLS_OFF: usize = 2176;

fn pools() -> Vec<PoolSpec> {
    vec![
        PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 0, 0, 10),
            last: Ipv4Addr::new(10, 0, 0, 29),
        },
        PoolSpec {
            id: 2,
            first: Ipv4Addr::new(10, 1, 0, 10),
            last: Ipv4Addr::new(10, 1, 0, 20),
        },
    ]
}

/// The pool configuration the damaged file is opened with.
fn pools_variant(v: u8) -> Vec<PoolSpec> {
    let mut p = pools();
    match v % 6 {
        0..=2 => {}
        3 => p[0].last = Ipv4Addr::new(10, 0, 0, 19), // shrink
        4 => p[1].last = Ipv4Addr::new(10, 1, 0, 40), // grow
        _ => {
            p.swap(0, 1);
            p[1].id = 3; // pool renumbered
        }
    }
    p
}

/// The valid file (and its side area) every input starts from.
fn base_file() -> &'static (Vec<u8>, Vec<u8>) {
    static BASE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = scratch_dir();
        let path = dir.path().join("base.db");
        let opts = OpenOptions {
            now: NOW,
            ..OpenOptions::default()
        };
        let (t, _) = LeaseTable::open(&path, &pools(), &opts).expect("create the base file");
        let states = [
            LeaseState::Active,
            LeaseState::Offered,
            LeaseState::Declined,
            LeaseState::Released,
            LeaseState::Expired,
            LeaseState::Abandoned,
            LeaseState::Reserved,
            LeaseState::Backup,
        ];
        for (i, st) in states.iter().enumerate() {
            let key = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, i as u8]);
            let Alloc::Taken(slot, ()) = t.allocate_if_var(1, 0, NOW, Owner::Primary, |l, ve| {
                l.state = *st;
                l.client = key;
                l.htype = 1;
                l.hlen = 6;
                l.start = NOW - 10;
                l.expiry = NOW + 100 * i as u32;
                if i % 2 == 0 {
                    let long: Vec<u8> = (0..120u8).map(|k| k ^ i as u8).collect();
                    let mut v = lease_store::VarData::EMPTY;
                    v.set_relay_agent_info(&long);
                    v.set_host_name(b"cpe-host-name");
                    v.set_vendor_class(b"docsis3.1");
                    ve.set_owned(l, v);
                } else {
                    l.set_relay_agent_info(&[1, 2, 0xaa, 0xbb]);
                }
                Some(())
            }) else {
                panic!("allocation in the base file");
            };
            let _ = slot;
        }
        t.set_failover_area(b"failover state of the base file")
            .expect("failover area");
        t.flush().expect("flush the base file");
        drop(t);
        (
            std::fs::read(&path).expect("read the base file"),
            std::fs::read(ext_path(&path)).expect("read the base side area"),
        )
    })
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Byte { at: u16, val: u8 },
    Word { at: u16, val: u32 },
    Fill { at: u16, len: u8, val: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    edits: Vec<Edit>,
    /// Recompute the header and record checksums after the edits.
    fix_crcs: bool,
    /// Cut the file to this many bytes (or extend it with zeros).
    resize: Option<u16>,
    /// Edits of the side area (`None`: the side area is missing, as for an older file).
    side_edits: Option<Vec<Edit>>,
    /// Recompute the side chunks' checksums after the edits.
    fix_side_crcs: bool,
    pools: u8,
    create: bool,
    allow_shrink: bool,
}

fn rd32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// Header CRC (bytes 0..40, 44..64 and the pool table) and every record's CRC (bytes
/// 8..128) as the store writes them, so damage behind the checksums gets through.
fn fix_crcs(f: &mut [u8]) {
    let npools = rd32(f, 20) as usize;
    let table_end = POOLS_OFF.saturating_add(npools.saturating_mul(16));
    if f.len() >= table_end.max(64) {
        let mut c = crc32fast::Hasher::new();
        c.update(&f[0..40]);
        c.update(&f[44..64]);
        c.update(&f[POOLS_OFF..table_end]);
        let crc = c.finalize();
        f[40..44].copy_from_slice(&crc.to_le_bytes());
    }
    let start = rd32(f, 16) as usize;
    let mut at = start;
    while at + RECORD <= f.len() {
        let rec = &mut f[at..at + RECORD];
        if rec.iter().any(|b| *b != 0) {
            let crc = crc32fast::hash(&rec[8..]);
            rec[4..8].copy_from_slice(&crc.to_le_bytes());
        }
        at += RECORD;
    }
}

fn apply(f: &mut [u8], edits: &[Edit]) {
    let len = f.len();
    for e in edits.iter().take(64) {
        match *e {
            Edit::Byte { at, val } => f[usize::from(at) % len] = val,
            Edit::Word { at, val } => {
                let at = usize::from(at) % (len - 4);
                f[at..at + 4].copy_from_slice(&val.to_le_bytes());
            }
            Edit::Fill { at, len: n, val } => {
                let at = usize::from(at) % len;
                let end = (at + usize::from(n)).min(len);
                f[at..end].fill(val);
            }
        }
    }
}

/// CRC-32C (the side area's checksum), bitwise.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Every side chunk's CRC (bytes 8..128 of each 128-byte chunk after the 4096-byte header).
fn fix_side_crcs(f: &mut [u8]) {
    let mut at = 4096;
    while at + RECORD <= f.len() {
        let c = &mut f[at..at + RECORD];
        if c.iter().any(|b| *b != 0) {
            let crc = crc32c(&c[8..]);
            c[4..8].copy_from_slice(&crc.to_le_bytes());
        }
        at += RECORD;
    }
}

fuzz_target!(|inp: Input| {
    let (base, base_side) = base_file();
    let mut f = base.clone();
    apply(&mut f, &inp.edits);
    let side = inp.side_edits.as_ref().map(|edits| {
        let mut s = base_side.clone();
        apply(&mut s, edits);
        if inp.fix_side_crcs {
            fix_side_crcs(&mut s);
        }
        s
    });
    if inp.fix_crcs {
        fix_crcs(&mut f);
    }
    if let Some(n) = inp.resize {
        // Multiples of the record size mostly: cuts at a record boundary are the likely ones.
        let n = if n % 2 == 0 {
            usize::from(n / 2) * RECORD
        } else {
            usize::from(n)
        };
        f.resize(n, 0);
    }
    let dir = scratch_dir();
    let path = dir.path().join("leases.db");
    std::fs::write(&path, &f).expect("write the damaged file");
    if let Some(s) = &side {
        std::fs::write(ext_path(&path), s).expect("write the damaged side area");
    }
    let pools = pools_variant(inp.pools);
    let opts = OpenOptions {
        now: NOW,
        create: inp.create,
        allow_shrink: inp.allow_shrink,
        shards: 2,
        wal: None,
        spare: 0,
    };
    let Ok((t, _report)) = LeaseTable::open(&path, &pools, &opts) else {
        return;
    };
    for p in &pools {
        assert_eq!(
            t.pool_stats(p.id),
            t.recount(p.id),
            "pool {} counters differ from its records after open",
            p.id
        );
    }
    let n = t.iter().count();
    assert_eq!(n as u64, pools.iter().map(PoolSpec::len).sum::<u64>());
    let _ = t.failover_area();
    let key = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 0xee]);
    if let Alloc::Taken(slot, ()) = t.allocate_if(pools[0].id, 0, NOW, Owner::Primary, |l| {
        l.state = LeaseState::Active;
        l.client = key;
        l.expiry = NOW + 60;
        Some(())
    }) {
        assert_eq!(t.find_client(&key).map(|(s, _)| s), Some(slot));
    }
    let _ = t.flush();
});
