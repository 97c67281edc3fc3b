//! Arbitrary text into `xdhcpd_config::parse`: a configuration or errors that name a place,
//! never a panic. An accepted configuration must be usable as the daemon uses it: its pools
//! form lease-store pools, subnet lookups answer, and a `[failover]` section gives an engine
//! configuration the failover engine accepts (else the daemon would refuse to start with an
//! error that names no line of the file).
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use xdhcpd_failover::FailoverEngine;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match xdhcpd_config::parse(text, "fuzz.toml") {
        Ok(c) => c,
        Err(errs) => {
            assert!(!errs.is_empty(), "parse failed without an error");
            for e in &errs.errors {
                let shown = e.to_string();
                assert!(
                    shown.starts_with("fuzz.toml"),
                    "error without the file name: {shown}"
                );
            }
            return;
        }
    };
    for (id, first, last) in cfg.pool_specs() {
        assert!(first <= last, "pool {id}: {first} > {last}");
        assert!(cfg.pool(id).is_some(), "pool {id} not found by id");
        assert!(cfg.pool_of(first).is_some() && cfg.pool_of(last).is_some());
    }
    for s in &cfg.subnets {
        let _ = cfg.subnet_for(s.net.addr());
    }
    let _ = cfg.subnet_for(Ipv4Addr::new(10, 0, 0, 1));
    for t in cfg.subnets.iter().map(|s| s.times) {
        let lease = t.lease_for(None);
        assert!(t.min <= lease && lease <= t.max);
        assert!(t.t1(lease) <= t.t2(lease) && t.t2(lease) <= lease);
    }
    for f in &cfg.failovers {
        let e = xdhcpd::failover::engine_config(f);
        if let Err(err) = FailoverEngine::new(e, None, 1_800_000_000) {
            panic!("accepted [failover] section refused by the failover engine: {err}");
        }
    }
});
