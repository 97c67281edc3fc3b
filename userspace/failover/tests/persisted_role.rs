//! The persisted failover state records our role (issue 15): a server configured in the
//! other role (a primary's configuration over the secondary's lease file, or the reverse)
//! refuses to resume from it; state written before the role was recorded still loads, and
//! the role is recorded at once.

use xdhcpd_failover::{
    Action, Config, FailoverEngine, FailoverPersist, PersistError, Role, ServerState, StartError,
    PERSIST_LEN,
};

const NOW: u32 = 1_700_000_000;

fn fnv1a(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A record in the layout written before the role was recorded (byte 14 reserved, 0), built
/// by hand from the documented layout: NORMAL since NOW-100, partner NORMAL, MCLT 3600, ever
/// communicated.
fn old_format_bytes() -> [u8; PERSIST_LEN] {
    let mut b = [0u8; PERSIST_LEN];
    b[0..4].copy_from_slice(b"XFOP");
    b[4..6].copy_from_slice(&1u16.to_be_bytes());
    b[6] = 2; // NORMAL
    b[7] = 2;
    b[8..12].copy_from_slice(&(NOW - 100).to_be_bytes());
    b[12] = 2;
    b[13] = 1; // ever communicated
    b[16..20].copy_from_slice(&(NOW - 100).to_be_bytes());
    b[20..24].copy_from_slice(&(NOW - 5).to_be_bytes());
    b[24..28].copy_from_slice(&(NOW - 5).to_be_bytes());
    b[32..36].copy_from_slice(&(NOW - 100).to_be_bytes());
    b[36..40].copy_from_slice(&3600u32.to_be_bytes());
    let c = fnv1a(&b[..60]);
    b[60..64].copy_from_slice(&c.to_be_bytes());
    b
}

#[test]
fn role_round_trips_and_old_files_load_without_it() {
    let old = FailoverPersist::from_bytes(&old_format_bytes()).expect("old format loads");
    assert_eq!(old.role, None);
    assert_eq!(old.own_state, ServerState::Normal);
    assert_eq!(old.mclt, 3600);
    for role in [Role::Primary, Role::Secondary] {
        let p = FailoverPersist {
            role: Some(role),
            ..old
        };
        let b = p.to_bytes();
        assert_eq!(b[14], if role == Role::Primary { 1 } else { 2 });
        assert_eq!(FailoverPersist::from_bytes(&b), Ok(p));
    }
    // Without a role the bytes are exactly the old layout.
    assert_eq!(old.to_bytes(), old_format_bytes());
    // An unknown role value is refused like any other corrupt field.
    let mut b = old_format_bytes();
    b[14] = 3;
    let c = fnv1a(&b[..60]);
    b[60..64].copy_from_slice(&c.to_be_bytes());
    assert_eq!(FailoverPersist::from_bytes(&b), Err(PersistError::Role(3)));
}

#[test]
fn swapped_role_is_refused_naming_both_roles() {
    let old = FailoverPersist::from_bytes(&old_format_bytes()).expect("old format loads");
    for (stored, configured) in [
        (Role::Secondary, Role::Primary),
        (Role::Primary, Role::Secondary),
    ] {
        let persisted = FailoverPersist {
            role: Some(stored),
            ..old
        };
        let e = FailoverEngine::new(Config::new(configured, "pair"), Some(persisted), NOW)
            .expect_err("a swapped role must not start");
        assert_eq!(e, StartError::RoleSwapped { stored, configured });
        let text = e.to_string();
        assert!(
            text.contains(&format!("written by the {stored}"))
                && text.contains(&format!("configured as the {configured}")),
            "{text}"
        );
        // The same role resumes.
        let e = FailoverEngine::new(Config::new(stored, "pair"), Some(persisted), NOW)
            .expect("same role resumes");
        assert_eq!(e.persisted().role, Some(stored));
    }
}

#[test]
fn old_format_state_is_accepted_and_the_role_recorded_at_once() {
    let old = FailoverPersist::from_bytes(&old_format_bytes()).expect("old format loads");
    for role in [Role::Primary, Role::Secondary] {
        let mut e =
            FailoverEngine::new(Config::new(role, "pair"), Some(old), NOW).expect("accepted");
        assert_eq!(e.persisted().role, Some(role));
        let mut stored = None;
        while let Some(a) = e.poll_action() {
            if let Action::Persist(p) = a {
                stored = Some(p);
            }
        }
        let stored = stored.expect("the role is persisted without waiting for a heartbeat");
        assert_eq!(stored.role, Some(role));
        // Everything else is what was stored.
        assert_eq!(
            FailoverPersist {
                role: None,
                ..stored
            },
            old
        );
    }
    // A first start (nothing stored) records the role with its first state too.
    let e = FailoverEngine::new(Config::new(Role::Secondary, "pair"), None, NOW).expect("fresh");
    assert_eq!(e.persisted().role, Some(Role::Secondary));
}
