//! `FailoverPolicy::is_standby` lets the data path drop DISCOVER, INFORM and
//! SELECTING/INIT-REBOOT REQUESTs before parsing them (XDP). That is only sound if `admit`
//! drops every such message whenever `is_standby` holds: checked here over roles, states,
//! splits, max-secs settings and many client keys.

use xdhcpd_failover::policy::hba_from_split;
use xdhcpd_failover::{Admission, FailoverPolicy, RequestKind, Role, ServerState};

const STATES: [ServerState; 12] = [
    ServerState::Startup,
    ServerState::Normal,
    ServerState::CommunicationsInterrupted,
    ServerState::PartnerDown,
    ServerState::PotentialConflict,
    ServerState::ResolutionInterrupted,
    ServerState::ConflictDone,
    ServerState::Recover,
    ServerState::RecoverWait,
    ServerState::RecoverDone,
    ServerState::Paused,
    ServerState::Shutdown,
];

fn policy(role: Role, state: ServerState, split: u16, max_secs: u16) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        hba: hba_from_split(split),
        load_balance_max_secs: max_secs,
        ..FailoverPolicy::standalone()
    }
}

#[test]
fn standby_policies_drop_every_message_the_xdp_filter_drops() {
    let filtered = [
        RequestKind::Discover,
        RequestKind::Inform,
        RequestKind::RequestSelecting,
        RequestKind::RequestInitReboot,
    ];
    let mut standby_seen = 0;
    for role in [Role::Primary, Role::Secondary] {
        for state in STATES {
            for split in [0u16, 1, 128, 255, 256] {
                for max_secs in [0u16, 10] {
                    let p = policy(role, state, split, max_secs);
                    if !p.is_standby() {
                        continue;
                    }
                    standby_seen += 1;
                    for c in 0u32..2_000 {
                        let key = c.to_be_bytes();
                        for kind in filtered {
                            // The filter judges only secs <= max-secs (all when max-secs is 0).
                            for secs in [0u16, 3, 5, 10, 60, u16::MAX]
                                .into_iter()
                                .filter(|&s| max_secs == 0 || s <= max_secs)
                            {
                                assert!(
                                    matches!(p.admit(kind, &key, secs), Admission::Drop(_)),
                                    "{role:?} {state:?} split {split} max-secs {max_secs}: \
                                     {kind:?} from {key:?} secs {secs} would be answered"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    // Primary with split 0 and secondary with split 256, in NORMAL, with and without max-secs.
    assert_eq!(standby_seen, 4);
}

#[test]
fn standby_only_for_a_normal_server_owning_no_bucket() {
    let backup_no_lb = policy(Role::Secondary, ServerState::Normal, 256, 0);
    assert!(backup_no_lb.is_standby());
    // Load balancing, another state, max-secs or the primary: not a standby.
    assert!(!policy(Role::Secondary, ServerState::Normal, 128, 0).is_standby());
    assert!(!policy(
        Role::Secondary,
        ServerState::CommunicationsInterrupted,
        256,
        0
    )
    .is_standby());
    assert!(!policy(Role::Secondary, ServerState::PartnerDown, 256, 0).is_standby());
    // With max-secs the standby answers a client that has waited longer (the filter passes it).
    let patient = policy(Role::Secondary, ServerState::Normal, 256, 10);
    assert!(patient.is_standby());
    assert!(!matches!(
        patient.admit(RequestKind::Discover, b"client", 11),
        Admission::Drop(_)
    ));
    assert!(!policy(Role::Primary, ServerState::Normal, 256, 0).is_standby());
    assert!(!FailoverPolicy::standalone().is_standby());
    // A standby still answers renewals and rebinds (draft-12 9.8.2): the filter passes them.
    for kind in [RequestKind::Renew, RequestKind::Rebind] {
        assert!(!matches!(
            backup_no_lb.admit(kind, b"client", 0),
            Admission::Drop(_)
        ));
    }
}
