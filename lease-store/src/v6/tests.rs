use super::*;

fn b(kind: IaKind, duid: &[u8], iaid: u32, last: u8, plen: u8) -> Binding6 {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0x77;
    a[15] = last;
    let mut x = Binding6::new(kind, duid, iaid, a, plen);
    x.state = BindingState::Active;
    x.cltt = 100;
    x.valid = 200;
    x.expiry = 300;
    x
}

#[test]
fn dhcpv6_table_put_find_rekey_remove() {
    let mut t = BindingTable6::in_memory(4);
    let s1 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let s2 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 2, 128)).unwrap();
    let s3 = t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    let mut out = [0u32; 8];
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 1, &mut out), 2);
    assert!(out[..2].contains(&s1) && out[..2].contains(&s2));
    assert_eq!(t.find_ia(IaKind::Pd, b"duid-a", 1, &mut out), 1);
    assert_eq!(out[0], s3);
    assert_eq!(t.find_ia(IaKind::Na, b"duid-b", 1, &mut out), 0);
    // Re-key slot 2 to another client.
    t.put(Some(s2), &b(IaKind::Na, b"duid-b", 9, 2, 128))
        .unwrap();
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 1, &mut out), 1);
    assert_eq!(t.find_ia(IaKind::Na, b"duid-b", 9, &mut out), 1);
    let a2 = b(IaKind::Na, b"x", 0, 2, 128).addr;
    assert_eq!(t.find_addr(IaKind::Na, &a2, 128), Some(s2));
    t.put(None, &b(IaKind::Na, b"c", 1, 9, 128)).unwrap();
    assert_eq!(
        t.put(None, &b(IaKind::Na, b"d", 1, 10, 128)),
        Err(TableFull)
    );
    t.remove(s2);
    assert_eq!(t.find_addr(IaKind::Na, &a2, 128), None);
    assert_eq!(t.len(), 3);
    t.put(None, &b(IaKind::Na, b"d", 1, 10, 128)).unwrap();
}

#[test]
fn dhcpv6_table_persists_bindings_duid_and_quarantines_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v6.db");
    let mut relay = b(IaKind::Pd, b"duid-r", 7, 0, 56);
    relay.relay.interface_id = Bytes::new(b"eth0.100");
    relay.relay.remote_id = Bytes::new(&[0, 0, 0x11, 0x8b, 1, 2, 3]);
    relay.relay.lladdr_type = 1;
    relay.relay.lladdr = Bytes::new(&[2, 0, 0, 0, 0, 1]);
    relay.flags = FLAG_RECONFIGURE_ACCEPT | FLAG_RECONF_KEY6 | FLAG_RECONFIGURING6;
    // The way back for a Reconfigure (relayed: relay source, link- and peer-address).
    relay.via = Via6 {
        hops: 1,
        src: [0x20; 16],
        link: [0xfd; 16],
        peer: [0xfe; 16],
    };
    relay.relay.link_address = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    relay.relay.peer_address = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    relay.acked_expiry = 250;
    let (s_na, s_pd);
    {
        let (mut t, rep) = BindingTable6::open(&p, 16, true).unwrap();
        assert!(rep.created);
        assert_eq!(t.server_duid(), None);
        t.set_server_duid(&[0, 2, 0, 0, 0x11, 0x8b, 1]).unwrap();
        s_na = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
        s_pd = t.put(None, &relay).unwrap();
        t.flush_dirty().unwrap();
        // A second open of the same file is refused while the first holds it.
        assert!(matches!(
            BindingTable6::open(&p, 16, true),
            Err(StoreError::Locked { .. })
        ));
    }
    {
        let (t, rep) = BindingTable6::open(&p, 8, false).unwrap();
        assert_eq!(rep.bindings, 2);
        assert!(rep.quarantined.is_empty());
        assert_eq!(t.capacity(), 16);
        assert_eq!(t.server_duid(), Some(&[0, 2, 0, 0, 0x11, 0x8b, 1][..]));
        assert_eq!(t.get(s_pd), Some(relay));
        assert_eq!(t.get(s_na).unwrap().duid.as_slice(), b"duid-a");
    }
    // Tear the NA record (a partial write): it is quarantined, the PD survives.
    let mut data = std::fs::read(&p).unwrap();
    data[HEADER6_LEN + s_na as usize * RECORD6_SIZE + 40] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let (mut t, rep) = BindingTable6::open(&p, 16, false).unwrap();
    assert_eq!(rep.bindings, 1);
    assert_eq!(rep.quarantined, vec![(s_na, "bad CRC")]);
    assert_eq!(t.get(s_pd), Some(relay));
    // The quarantined slot is reusable.
    for i in 0..15 {
        t.put(None, &b(IaKind::Na, b"z", i, 20 + i as u8, 128))
            .unwrap();
    }
    let (duid, all, bad) = read_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert!(duid.is_some());
    assert_eq!((all.len(), bad), (16, 0));
}

#[test]
fn dhcpv6_table_sweep_expires_then_reclaims() {
    let mut t = BindingTable6::in_memory(4);
    let s = t.put(None, &b(IaKind::Na, b"a", 1, 1, 128)).unwrap();
    assert_eq!(t.sweep(299, 10), (0, 0));
    assert_eq!(t.sweep(300, 10), (1, 0));
    assert_eq!(t.get(s).unwrap().state, BindingState::Expired);
    assert_eq!(t.sweep(305, 10), (0, 0));
    assert_eq!(t.sweep(311, 10), (0, 1));
    assert!(t.is_empty());
}

#[test]
fn dhcpv6_table_refuses_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v6.db");
    std::fs::write(&p, vec![7u8; HEADER6_LEN + RECORD6_SIZE]).unwrap();
    let e = BindingTable6::open(&p, 4, false).err().unwrap().to_string();
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn dhcpv6_table_find_client_returns_every_ia_of_a_duid_for_leasequery() {
    let mut t = BindingTable6::in_memory(8);
    let na1 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let na2 = t.put(None, &b(IaKind::Na, b"duid-a", 2, 2, 128)).unwrap();
    let pd = t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    t.put(None, &b(IaKind::Na, b"duid-b", 1, 3, 128)).unwrap();
    let mut out = [0u32; 8];
    let n = t.find_client(b"duid-a", &mut out);
    assert_eq!(n, 3);
    for s in [na1, na2, pd] {
        assert!(out[..n].contains(&s), "slot {s} missing");
    }
    // find_ia still tells the IAs of one client apart.
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 2, &mut out), 1);
    assert_eq!(out[0], na2);
    // A small output buffer is filled, not overrun.
    let mut one = [0u32; 1];
    assert_eq!(t.find_client(b"duid-a", &mut one), 1);
    t.remove(na1);
    assert_eq!(t.find_client(b"duid-a", &mut out), 2);
    assert_eq!(t.find_client(b"duid-z", &mut out), 0);
}
