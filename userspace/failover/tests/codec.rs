//! Codec: hand-built byte vectors in draft-12 / ISC dhcpd formats, round trips, streaming,
//! error offsets, and a fuzz-style no-panic test.

use std::net::Ipv4Addr;

use xdhcpd_failover::codec::{
    decode_message, relay_info_from_request_options, request_options_with_relay_info, BindingTxn,
    Body, ConnectInfo, DecodeError, Decoder, Message, RawOption,
};

fn hdr(len: u16, ty: u8, time: u32, xid: u32) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.push(ty);
    v.push(12);
    v.extend_from_slice(&time.to_be_bytes());
    v.extend_from_slice(&xid.to_be_bytes());
    v
}

fn opt(v: &mut Vec<u8>, code: u16, data: &[u8]) {
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
}

fn finish(mut v: Vec<u8>) -> Vec<u8> {
    let l = v.len() as u16;
    v[..2].copy_from_slice(&l.to_be_bytes());
    v
}

#[test]
fn contact_bytes() {
    let bytes = [0, 12, 11, 12, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 7];
    let m = decode_message(&bytes, 0).unwrap();
    assert_eq!(m, Message::new(0x6553_f100, 7, Body::Contact));
    assert_eq!(m.to_bytes().unwrap(), bytes);
}

#[test]
fn state_bytes_isc_order() {
    let mut v = hdr(0, 10, 1000, 3);
    opt(&mut v, 24, &[2]); // server-state NORMAL
    opt(&mut v, 23, &[0]); // server-flags
    opt(&mut v, 25, &900u32.to_be_bytes()); // start-time-of-state
    let v = finish(v);
    assert_eq!(v.len(), 12 + 5 + 5 + 8);
    let m = decode_message(&v, 0).unwrap();
    assert_eq!(
        m.body,
        Body::State {
            state: 2,
            flags: 0,
            start_time: 900
        }
    );
    assert_eq!(m.to_bytes().unwrap(), v);
}

#[test]
fn bndupd_bytes_like_isc() {
    // assigned-IP, binding-status, client-id, chaddr (htype + address), lease expiry,
    // potential expiry, stos, cltt, IP-flags (u16), client-request-options with option 82.
    let rai = [1u8, 4, b'e', b't', b'h', b'0'];
    let req = request_options_with_relay_info(&rai).unwrap();
    assert_eq!(&req[..6], &[99, 130, 83, 99, 82, 6]);
    let mut v = hdr(0, 3, 5000, 42);
    opt(&mut v, 2, &[192, 0, 2, 10]);
    opt(&mut v, 3, &[2]);
    opt(&mut v, 4, &[1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    opt(&mut v, 5, &[1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    opt(&mut v, 13, &8600u32.to_be_bytes());
    opt(&mut v, 18, &393_800u32.to_be_bytes());
    opt(&mut v, 25, &5000u32.to_be_bytes());
    opt(&mut v, 6, &5000u32.to_be_bytes());
    opt(&mut v, 12, &[0, 2]);
    opt(&mut v, 8, &req);
    let v = finish(v);
    let m = decode_message(&v, 0).unwrap();
    let Body::BndUpd(txns) = &m.body else {
        panic!("not a BNDUPD: {m:?}")
    };
    assert_eq!(txns.len(), 1);
    let t = &txns[0];
    assert_eq!(t.addr, Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(t.status, Some(2));
    assert_eq!(
        t.chaddr,
        Some((1, vec![0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]))
    );
    assert_eq!(t.lease_expiry, Some(8600));
    assert_eq!(t.potential_expiry, Some(393_800));
    assert_eq!(t.ip_flags, Some(2));
    assert_eq!(
        relay_info_from_request_options(t.request_options.as_ref().unwrap()),
        Some(rai.to_vec())
    );
    // Our encoder writes the same option order.
    assert_eq!(m.to_bytes().unwrap(), v);
}

#[test]
fn batched_bndupd_and_bndack_with_reject() {
    let mut v = hdr(0, 3, 1, 9);
    opt(&mut v, 2, &[10, 0, 0, 1]);
    opt(&mut v, 3, &[1]);
    opt(&mut v, 2, &[10, 0, 0, 2]);
    opt(&mut v, 3, &[7]);
    opt(&mut v, 900, &[1, 2, 3]); // unknown, kept with the second transaction
    let v = finish(v);
    let m = decode_message(&v, 0).unwrap();
    let Body::BndUpd(t) = &m.body else { panic!() };
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].status, Some(7));
    assert_eq!(
        t[1].unknown,
        vec![RawOption {
            code: 900,
            data: vec![1, 2, 3]
        }]
    );
    assert_eq!(m.to_bytes().unwrap(), v);

    let mut a = hdr(0, 4, 1, 9);
    opt(&mut a, 2, &[10, 0, 0, 1]);
    opt(&mut a, 2, &[10, 0, 0, 2]);
    opt(&mut a, 21, &[15]);
    opt(&mut a, 16, b"outdated");
    let a = finish(a);
    let m = decode_message(&a, 0).unwrap();
    let Body::BndAck(t) = &m.body else { panic!() };
    assert_eq!((t[0].reject_reason, t[1].reject_reason), (None, Some(15)));
    assert_eq!(t[1].message.as_deref(), Some(&b"outdated"[..]));
}

#[test]
fn connect_with_hba_and_connectack_reject() {
    let mut v = hdr(0, 5, 77, 1);
    opt(&mut v, 22, b"pair");
    opt(&mut v, 14, &10u32.to_be_bytes());
    opt(&mut v, 19, &60u32.to_be_bytes());
    opt(&mut v, 28, b"isc-4.4.3");
    opt(&mut v, 20, &[1]);
    opt(&mut v, 27, &[0]);
    opt(&mut v, 15, &3600u32.to_be_bytes());
    opt(&mut v, 11, &[0xff; 32]);
    let v = finish(v);
    let m = decode_message(&v, 0).unwrap();
    let Body::Connect(c) = &m.body else { panic!() };
    assert_eq!(c.relationship_name.as_deref(), Some(&b"pair"[..]));
    assert_eq!(
        (c.max_unacked, c.receive_timer, c.mclt),
        (Some(10), Some(60), Some(3600))
    );
    assert_eq!(c.hba.as_ref().map(|h| h.len()), Some(32));
    assert_eq!(m.to_bytes().unwrap(), v);

    let ack = Message::new(
        78,
        1,
        Body::ConnectAck(ConnectInfo {
            relationship_name: Some(b"pair".to_vec()),
            protocol_version: Some(1),
            reject_reason: Some(8),
            message: Some(b"unknown relationship".to_vec()),
            ..ConnectInfo::default()
        }),
    );
    let b = ack.to_bytes().unwrap();
    assert_eq!(decode_message(&b, 0).unwrap(), ack);
}

#[test]
fn round_trips_every_message() {
    let mut t = BindingTxn::new(Ipv4Addr::new(10, 1, 2, 3));
    t.status = Some(2);
    t.client_id = Some(vec![1, 2, 3]);
    t.chaddr = Some((1, vec![6; 6]));
    t.lease_expiry = Some(10);
    t.potential_expiry = Some(20);
    t.start_time = Some(5);
    t.cltt = Some(6);
    t.ip_flags = Some(1);
    t.ddns = Some(xdhcpd_failover::codec::Ddns {
        flags: 0x000f,
        name: b"\x04host\x00".to_vec(),
    });
    t.reply_options = Some(vec![99, 130, 83, 99, 58, 4, 0, 0, 1, 0]);
    let bodies = vec![
        Body::PoolReq,
        Body::PoolResp {
            addresses_transferred: 16,
        },
        Body::BndUpd(vec![t.clone()]),
        Body::BndAck(vec![BindingTxn::new(t.addr)]),
        Body::Connect(ConnectInfo {
            relationship_name: Some(b"x".to_vec()),
            mclt: Some(1),
            hba: Some(vec![0; 32]),
            delayed_service: Some(3),
            ..ConnectInfo::default()
        }),
        Body::ConnectAck(ConnectInfo {
            tls_reply: Some(0),
            ..ConnectInfo::default()
        }),
        Body::UpdReqAll,
        Body::UpdDone,
        Body::UpdReq,
        Body::State {
            state: 254,
            flags: 1,
            start_time: 3,
        },
        Body::Contact,
        Body::Disconnect {
            reject_reason: 17,
            message: Some(b"no traffic".to_vec()),
        },
        Body::Optional { msg_type: 200 },
    ];
    for b in bodies {
        let mut m = Message::new(0xdead_beef, 0x0102_0304, b);
        m.unknown.push(RawOption {
            code: 4000,
            data: vec![9],
        });
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes[3], 12, "payload offset");
        assert_eq!(
            u16::from_be_bytes([bytes[0], bytes[1]]) as usize,
            bytes.len()
        );
        let back = decode_message(&bytes, 0).unwrap();
        // BNDUPD/BNDACK attach trailing unknown options to the last transaction.
        if let Body::BndUpd(_) | Body::BndAck(_) = m.body {
            continue;
        }
        assert_eq!(back, m, "{}", m.body.name());
    }
}

#[test]
fn header_skips_unknown_header_bytes() {
    // Payload offset 16: four extra header bytes before the options.
    let mut v = vec![0, 0, 10, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef];
    opt(&mut v, 24, &[3]);
    let v = finish(v);
    let m = decode_message(&v, 0).unwrap();
    assert!(matches!(m.body, Body::State { state: 3, .. }));
}

#[test]
fn errors_name_offsets() {
    // Second message in the stream has length 11.
    let mut d = Decoder::new();
    d.push(&[0, 12, 11, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    d.push(&[0, 11, 11, 12]);
    assert!(d.next_message().unwrap().is_some());
    assert_eq!(
        d.next_message(),
        Err(DecodeError::BadLength {
            offset: 12,
            len: 11
        })
    );
    // And it stays failed.
    assert!(d.next_message().is_err());

    let mut d = Decoder::new();
    d.push(&[0x08, 0x01]);
    assert_eq!(
        d.next_message(),
        Err(DecodeError::BadLength {
            offset: 0,
            len: 2049
        })
    );

    // Option running past the end.
    let mut v = hdr(0, 10, 0, 0);
    v.extend_from_slice(&[0, 24, 0, 9, 2]);
    let v = finish(v);
    assert_eq!(
        decode_message(&v, 100),
        Err(DecodeError::OptionOverflow { offset: 112 })
    );
    // Wrong fixed size.
    let mut v = hdr(0, 10, 0, 0);
    opt(&mut v, 24, &[2, 2]);
    let v = finish(v);
    assert!(matches!(
        decode_message(&v, 0),
        Err(DecodeError::BadOptionLength {
            code: 24,
            offset: 12,
            ..
        })
    ));
    // Unknown mandatory type closes the connection; 128..255 are ignored.
    let v = finish(hdr(0, 50, 0, 0));
    assert_eq!(
        decode_message(&v, 0),
        Err(DecodeError::UnknownType {
            offset: 0,
            msg_type: 50
        })
    );
    let v = finish(hdr(0, 150, 0, 0));
    assert_eq!(
        decode_message(&v, 0).unwrap().body,
        Body::Optional { msg_type: 150 }
    );
    // Duplicate option.
    let mut v = hdr(0, 10, 0, 0);
    opt(&mut v, 24, &[2]);
    opt(&mut v, 24, &[2]);
    let v = finish(v);
    assert!(matches!(
        decode_message(&v, 0),
        Err(DecodeError::DuplicateOption { code: 24, .. })
    ));
    // Payload offset below 12.
    let v = vec![0, 12, 11, 8, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        decode_message(&v, 0),
        Err(DecodeError::BadPayloadOffset { .. })
    ));
}

#[test]
fn streaming_byte_by_byte() {
    let msgs: Vec<Message> = (0..20)
        .map(|i| {
            Message::new(
                i,
                i,
                if i % 2 == 0 {
                    Body::Contact
                } else {
                    Body::PoolResp {
                        addresses_transferred: i,
                    }
                },
            )
        })
        .collect();
    let mut stream = Vec::new();
    for m in &msgs {
        m.encode(&mut stream).unwrap();
    }
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for b in &stream {
        d.push(std::slice::from_ref(b));
        while let Some(m) = d.next_message().unwrap() {
            out.push(m);
        }
    }
    assert_eq!(out, msgs);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn fuzz_never_panics() {
    // splitmix64
    let mut s: u64 = 0x1234_5678;
    let mut next = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let iterations = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let seed_msg = {
        let mut t = BindingTxn::new(Ipv4Addr::new(10, 0, 0, 1));
        t.status = Some(2);
        t.chaddr = Some((1, vec![1; 6]));
        t.lease_expiry = Some(1);
        Message::new(1, 1, Body::BndUpd(vec![t]))
            .to_bytes()
            .unwrap()
    };
    let mut decoded = 0u32;
    for i in 0..iterations {
        let mut buf: Vec<u8> = if i % 2 == 0 {
            let n = (next() % 64) as usize;
            (0..n).map(|_| next() as u8).collect()
        } else {
            // Mutate a valid message (keeps most framing intact, reaches option parsing).
            let mut b = seed_msg.clone();
            for _ in 0..(next() % 4 + 1) {
                let k = (next() as usize) % b.len();
                b[k] = next() as u8;
            }
            b
        };
        if i % 3 == 0 && buf.len() >= 2 {
            let l = buf.len() as u16;
            buf[..2].copy_from_slice(&l.to_be_bytes());
        }
        let mut d = Decoder::new();
        let mut k = 0;
        while k < buf.len() {
            let n = 1 + (next() as usize) % 7;
            let end = (k + n).min(buf.len());
            d.push(&buf[k..end]);
            k = end;
            while let Ok(Some(_)) = d.next_message() {
                decoded += 1;
            }
        }
        let _ = decode_message(&buf, 0);
    }
    assert!(decoded > 0, "the mutator never produced a valid message");
}
