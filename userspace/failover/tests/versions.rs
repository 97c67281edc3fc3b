//! Both versions are known to each side (vendor-class in CONNECT / CONNECTACK), kept after a
//! disconnect, and a mismatch is reported once per partner version, not at every reconnect
//! (issue 15).

mod common;

use common::{Sim, SimParams};
use xdhcpd_failover::ServerState;

fn run_until(s: &mut Sim, max: u32, f: impl Fn(&Sim) -> bool) {
    let end = s.t + max;
    while !f(s) {
        assert!(s.t < end, "not reached within {max}s\n{}", s.log_tail());
        s.run_until(s.t + 1);
    }
}

fn both_normal(s: &Sim) -> bool {
    (0..2).all(|i| s.nodes[i].state() == Some(ServerState::Normal))
}

fn partner_version(s: &Sim, i: usize) -> Option<String> {
    let e = s.nodes[i].engine.as_ref()?;
    e.last_partner_vendor_class()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn same_version_no_warning_other_version_warned_once() {
    let mut s = Sim::new(3, SimParams::scripted());
    s.random_faults = false;
    s.random_clients = false;
    run_until(&mut s, 60, both_normal);
    let ours = s.nodes[0].cfg.vendor_class.clone();
    assert!(ours.starts_with("xdhcpd-"), "{ours}");
    for i in 0..2 {
        assert_eq!(partner_version(&s, i).as_deref(), Some(ours.as_str()));
        assert!(!s.nodes[i].engine.as_ref().unwrap().version_mismatch());
    }
    assert_eq!(s.cov.version_warnings, 0);

    // The secondary is upgraded to another version and restarts.
    s.crash(1, true, 2);
    s.nodes[1].cfg.vendor_class = "xdhcpd-9.9.9".into();
    run_until(&mut s, 120, both_normal);
    assert_eq!(partner_version(&s, 0).as_deref(), Some("xdhcpd-9.9.9"));
    assert_eq!(partner_version(&s, 1).as_deref(), Some(ours.as_str()));
    for i in 0..2 {
        assert!(s.nodes[i].engine.as_ref().unwrap().version_mismatch());
    }
    assert_eq!(s.cov.version_warnings, 2, "one warning on each side");

    // Reconnects with the same versions warn no more; the versions stay known meanwhile.
    for _ in 0..3 {
        s.reset_connection();
        assert!(!s.nodes[0].engine.as_ref().unwrap().connected());
        assert_eq!(partner_version(&s, 0).as_deref(), Some("xdhcpd-9.9.9"));
        run_until(&mut s, 60, both_normal);
    }
    assert!(s.nodes[0].engine.as_ref().unwrap().stats().connections >= 4);
    assert_eq!(s.cov.version_warnings, 2, "no new warning on reconnect");
}
