//! SIGKILL survival: a child process binds leases and is killed; every
//! lease flushed before the kill must be there at the next open.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use lease_store::*;

mod common;
use common::*;

const CHILD_ENV: &str = "LEASE_STORE_CRASH_CHILD";

fn crash_pools() -> Vec<PoolSpec> {
    vec![pool(1, [10, 9, 0, 0], [10, 9, 63, 255])]
}

/// Not a test on its own: the body of the child process that `sigkill_*`
/// starts (it returns at once unless the env var is set).
#[test]
#[ignore = "helper process for leases_flushed_before_sigkill_survive"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var("LEASE_STORE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let (t, _) = LeaseTable::open(Path::new(&path), &crash_pools(), &opts(2)).unwrap();
    let t = Arc::new(t);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..2u32)
        .map(|tid| {
            let t = t.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut d = DirtySet::new();
                let mut batch = Vec::new();
                for i in 0.. {
                    let n = (round << 20) | (tid << 19) | i;
                    let got = t.allocate(1, tid as usize, NOW, Owner::Primary, |l| {
                        offer(l, n, NOW);
                        ack(l, NOW, 86_400);
                    });
                    let Some((s, ())) = got else { break };
                    d.note(s);
                    batch.push(n);
                    // Renew an older lease too, so kills also hit rewrites.
                    if let Some((s2, _)) = t.find_client(&key(n.saturating_sub(7))) {
                        t.update(s2, |l| l.cltt += 1);
                        d.note(s2);
                    }
                    if batch.len() == 16 {
                        t.flush_set(&mut d).unwrap();
                        let mut o = out.lock().unwrap();
                        for n in batch.drain(..) {
                            writeln!(o, "COMMITTED {n}").unwrap();
                        }
                        o.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn leases_flushed_before_sigkill_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut committed: Vec<u32> = Vec::new();
    let mut rng = Rng(0xdead_beef);
    for round in 0..5u32 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("LEASE_STORE_CRASH_ROUND", round.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let want = 200 + (rng.next() % 1500) as usize;
        let mut lines = BufReader::new(stdout).lines();
        let mut got = 0;
        while got < want {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("COMMITTED ") {
                        committed.push(n.parse().unwrap());
                        got += 1;
                    }
                }
                _ => break,
            }
        }
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Lines already printed were flushed before printing: read the rest.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("COMMITTED ") {
                committed.push(n.parse().unwrap());
            }
        }
        assert!(got > 0, "child produced no leases in round {round}");

        let (t, rep) = LeaseTable::open(&path, &crash_pools(), &opts(2)).unwrap();
        let mut owners: HashMap<Ipv4Addr, ClientKey> = HashMap::new();
        for (_, l) in t.iter() {
            if l.state == LeaseState::Active {
                assert!(owners.insert(l.addr, l.client).is_none());
            }
        }
        for n in &committed {
            let hit = t.find_client(&key(*n));
            match hit {
                Some((_, l)) => assert_eq!(l.state, LeaseState::Active),
                None => panic!("round {round}: committed lease {n} missing; report {rep:?}"),
            }
        }
        let clients: HashSet<ClientKey> = owners.values().copied().collect();
        assert_eq!(clients.len(), owners.len(), "a client holds two addresses");
        assert!(rep.quarantined.is_empty(), "round {round}: {rep:?}");
        assert_eq!(t.pool_stats(1), t.recount(1));
        drop(t);
    }
    assert!(committed.len() >= 1000);
}
