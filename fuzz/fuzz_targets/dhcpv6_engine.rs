//! Raw bytes into the DHCPv6 engine, as a direct multicast message, a unicast one and a
//! message from a trusted relay, against one in-memory binding table (so bindings made by
//! one input meet the next). Nothing may panic; a reply fits the buffer and parses back
//! (a Relay-Reply when relayed); the table never holds more than its capacity.
#![no_main]

use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, OnceLock};

use lease_store::v6::BindingTable6;
use libfuzzer_sys::fuzz_target;
use xdhcpd_dhcpv6::wire::{msg, Message, Relay};
use xdhcpd_dhcpv6::{
    duid_en, AddrPool6, Config6, Decision6, Engine6, Link6, PrefixPool6, Reservation6, RxMeta6,
    Stats6,
};

const RELAY: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("fixed address")
}

fn state() -> &'static Mutex<(Engine6, BindingTable6)> {
    static S: OnceLock<Mutex<(Engine6, BindingTable6)>> = OnceLock::new();
    S.get_or_init(|| {
        let link = Link6 {
            name: "fuzz".into(),
            prefix: ip("fd77::"),
            prefix_len: 64,
            ifindexes: vec![1],
            addr_pools: vec![AddrPool6 {
                start: ip("fd77::10"),
                end: ip("fd77::2f"),
            }],
            prefix_pools: vec![PrefixPool6 {
                prefix: ip("fd77:100::"),
                prefix_len: 48,
                delegated_len: 52,
            }],
            preferred: 100,
            valid: 200,
            t1: 0,
            t2: 0,
            rapid_commit: true,
            options: vec![(23, ip("fd77::1").octets().to_vec())],
            reservations: vec![Reservation6 {
                duid: vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6],
                address: Some(ip("fd77::1:1")),
                prefix: Some((ip("fd77:200::"), 56)),
            }],
            access: Default::default(),
        };
        let cfg = Config6 {
            links: vec![link],
            trusted_relays: vec![RELAY],
            decline_hold: 10,
            leasequery_allow: vec![(RELAY, 128)],
            classes: vec![],
        };
        let e = Engine6::new(cfg, duid_en(4491, b"fuzz"), Arc::new(Stats6::default()));
        Mutex::new((e, BindingTable6::in_memory(64)))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let mut g = state().lock().unwrap_or_else(|p| p.into_inner());
    let (e, t) = &mut *g;
    let meta = match sel % 3 {
        0 => RxMeta6 {
            src: ip("fe80::1"),
            multicast: true,
            ifindex: 1,
            src_port: 546,
        },
        1 => RxMeta6 {
            src: ip("fe80::1"),
            multicast: false,
            ifindex: 1,
            src_port: 546,
        },
        _ => RxMeta6 {
            src: RELAY,
            multicast: false,
            ifindex: 9,
            src_port: 546,
        },
    };
    let now = 1_000 + u32::from(sel) * 7;
    let mut out = [0u8; 1500];
    if let Decision6::Reply { len, .. } = e.handle(t, now, &meta, payload, &mut out) {
        assert!(len <= out.len());
        if out[0] == msg::RELAY_REPL {
            assert!(
                Relay::parse(&out[..len], 0).is_ok(),
                "unparsable Relay-Reply"
            );
        } else {
            let m = Message::parse(&out[..len], 0).expect("the reply parses back");
            assert!(matches!(
                m.msg_type,
                msg::ADVERTISE | msg::REPLY | msg::LEASEQUERY_REPLY
            ));
        }
    }
    assert!(t.len() <= t.capacity());
});
