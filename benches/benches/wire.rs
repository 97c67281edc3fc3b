//! DHCPv4 wire format: our zero-copy view and reply writer against dhcproto
//! on the same bytes.
//!
//! Parse: what the engine needs from a request is the fixed header plus a
//! summary of the options (53, 61, 50, 54, 55, 57, 60, 12, 82 with its
//! sub-options). Three ways to get it:
//! - `ours`: `Message::new_checked(..).summary()`;
//! - `dhcproto_owned`: `dhcproto::v4::Message::decode` (the owned message,
//!   every option decoded into a map);
//! - `dhcproto_borrowed`: dhcproto's lazy `v4::borrowed::Message` and its
//!   option iterator, matching the same codes (no error on truncation, no
//!   overload support: less work than ours, so a fair lower bound).
//!
//! Build: an OFFER with the options the engine sends for this request.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dhcproto::v4::{self, relay};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use xdhcpd_benches::{build, Req, FRAME_SIZE, SERVER_ID};
use xdhcpd_dhcpv4::wire::{opt, Message, ReplyWriter};

/// Equivalent of `Summary` pulled out of dhcproto's borrowed view.
#[derive(Default)]
struct BorrowedSummary<'a> {
    kind: Option<u8>,
    requested: Option<[u8; 4]>,
    server_id: Option<[u8; 4]>,
    client_id: Option<std::borrow::Cow<'a, [u8]>>,
    params: Option<std::borrow::Cow<'a, [u8]>>,
    max_size: Option<[u8; 2]>,
    vendor: Option<std::borrow::Cow<'a, [u8]>>,
    host: Option<std::borrow::Cow<'a, [u8]>>,
    relay: Option<std::borrow::Cow<'a, [u8]>>,
    giaddr: Option<Ipv4Addr>,
}

fn dhcproto_borrowed(b: &[u8]) -> Option<BorrowedSummary<'_>> {
    let m = v4::borrowed::Message::new(b).ok()?;
    let mut s = BorrowedSummary {
        giaddr: Some(m.giaddr()),
        ..Default::default()
    };
    for o in m.opts() {
        let code: u8 = o.code().into();
        let data = o.data();
        match code {
            53 => s.kind = data.first().copied(),
            50 => s.requested = data.try_into().ok(),
            54 => s.server_id = data.try_into().ok(),
            57 => s.max_size = data.try_into().ok(),
            61 => s.client_id = Some(std::borrow::Cow::Owned(data.to_vec())),
            55 => s.params = Some(std::borrow::Cow::Owned(data.to_vec())),
            60 => s.vendor = Some(std::borrow::Cow::Owned(data.to_vec())),
            12 => s.host = Some(std::borrow::Cow::Owned(data.to_vec())),
            82 => s.relay = Some(std::borrow::Cow::Owned(data.to_vec())),
            _ => {}
        }
    }
    Some(s)
}

/// Like `dhcproto_borrowed` but keeps nothing: only walks the options and
/// reads the header. The bare cost of dhcproto's lazy iterator.
fn dhcproto_borrowed_walk(b: &[u8]) -> usize {
    let Ok(m) = v4::borrowed::Message::new(b) else {
        return 0;
    };
    let mut n = u32::from(m.giaddr()) as usize;
    for o in m.opts() {
        n = n
            .wrapping_add(o.len())
            .wrapping_add(u8::from(o.code()) as usize);
    }
    n
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire/parse");
    g.throughput(Throughput::Elements(1));
    let yiaddr = Ipv4Addr::new(10, 0, 1, 7);
    let msgs = [
        ("discover", build(&Req::discover(0x42))),
        ("request", build(&Req::select(0x42, yiaddr))),
    ];
    for (name, m) in &msgs {
        let bytes = &m.bytes[..];
        g.bench_function(format!("{name}/ours_new_checked_summary"), |b| {
            b.iter(|| {
                let m = Message::new_checked(black_box(bytes)).ok()?;
                let s = m.summary().ok()?;
                Some((m.xid(), m.giaddr(), s))
            })
        });
        g.bench_function(format!("{name}/dhcproto_decode_owned"), |b| {
            b.iter(|| v4::Message::decode(&mut Decoder::new(black_box(bytes))).ok())
        });
        g.bench_function(format!("{name}/dhcproto_borrowed_summary"), |b| {
            b.iter(|| dhcproto_borrowed(black_box(bytes)).map(|s| (s.kind, s.giaddr)))
        });
        g.bench_function(format!("{name}/dhcproto_borrowed_walk_only"), |b| {
            b.iter(|| dhcproto_borrowed_walk(black_box(bytes)))
        });
    }
    g.finish();
}

/// The OFFER the engine would send for the DISCOVER, with our writer.
fn offer_ours(req: &[u8], out: &mut [u8]) -> Option<usize> {
    let m = Message::new_checked(req).ok()?;
    let s = m.summary().ok()?;
    let mut w = ReplyWriter::new(out, &m, 1500 - 28).ok()?;
    w.set_yiaddr(Ipv4Addr::new(10, 0, 1, 7));
    w.option(opt::MESSAGE_TYPE, &[2]).ok()?;
    w.option_ip(opt::SERVER_ID, SERVER_ID).ok()?;
    w.option_u32(opt::LEASE_TIME, 3600).ok()?;
    w.option_u32(opt::RENEWAL_TIME, 1800).ok()?;
    w.option_u32(opt::REBINDING_TIME, 3150).ok()?;
    w.option(opt::SUBNET_MASK, &[255, 240, 0, 0]).ok()?;
    w.option_if_room(opt::ROUTER, &[10, 0, 0, 1]);
    w.option_if_room(6, &[192, 0, 2, 53, 192, 0, 2, 54]);
    w.option_if_room(15, b"access.example.net");
    if let Some(ri) = s.relay_agent_info {
        w.option(opt::RELAY_AGENT_INFO, ri).ok()?;
    }
    Some(w.finish())
}

/// The same OFFER as a dhcproto message, built from the decoded request.
fn offer_dhcproto(req: &v4::Message) -> v4::Message {
    let mut m = v4::Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(10, 0, 1, 7),
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        &req.chaddr()[..6],
    );
    m.set_opcode(v4::Opcode::BootReply).set_flags(req.flags());
    let o = m.opts_mut();
    o.insert(v4::DhcpOption::MessageType(v4::MessageType::Offer));
    o.insert(v4::DhcpOption::ServerIdentifier(SERVER_ID));
    o.insert(v4::DhcpOption::AddressLeaseTime(3600));
    o.insert(v4::DhcpOption::Renewal(1800));
    o.insert(v4::DhcpOption::Rebinding(3150));
    o.insert(v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 240, 0, 0)));
    o.insert(v4::DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]));
    o.insert(v4::DhcpOption::DomainNameServer(vec![
        Ipv4Addr::new(192, 0, 2, 53),
        Ipv4Addr::new(192, 0, 2, 54),
    ]));
    o.insert(v4::DhcpOption::DomainName("access.example.net".into()));
    if let Some(ri @ v4::DhcpOption::RelayAgentInformation(_)) =
        req.opts().get(v4::OptionCode::RelayAgentInformation)
    {
        o.insert(ri.clone());
    }
    m
}

fn offer(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire/offer");
    g.throughput(Throughput::Elements(1));
    let req = build(&Req::discover(0x42));
    let decoded = match v4::Message::decode(&mut Decoder::new(&req.bytes)) {
        Ok(m) => m,
        Err(e) => panic!("dhcproto cannot decode the bench DISCOVER: {e}"),
    };
    // Both sides must build the same message, or the comparison is void.
    let mut out = vec![0u8; FRAME_SIZE];
    let n = offer_ours(&req.bytes, &mut out).expect("our OFFER builds");
    let ours_decoded =
        v4::Message::decode(&mut Decoder::new(&out[..n])).expect("our OFFER decodes");
    let theirs = offer_dhcproto(&decoded);
    assert_eq!(ours_decoded.opts(), theirs.opts(), "OFFER options differ");
    assert_eq!(ours_decoded.yiaddr(), theirs.yiaddr());
    assert!(matches!(
        theirs.opts().get(v4::OptionCode::RelayAgentInformation),
        Some(v4::DhcpOption::RelayAgentInformation(r)) if r.get(relay::RelayCode::AgentCircuitId).is_some()
    ));

    g.bench_function("ours_reply_writer_in_place", |b| {
        b.iter(|| offer_ours(black_box(&req.bytes), black_box(&mut out)))
    });
    let mut v: Vec<u8> = Vec::with_capacity(1024);
    g.bench_function("dhcproto_build_and_encode", |b| {
        b.iter(|| {
            let m = offer_dhcproto(black_box(&decoded));
            v.clear();
            m.encode(&mut Encoder::new(&mut v)).ok()?;
            Some(v.len())
        })
    });
    let prebuilt = offer_dhcproto(&decoded);
    g.bench_function("dhcproto_encode_prebuilt", |b| {
        b.iter(|| {
            v.clear();
            black_box(&prebuilt)
                .encode(&mut Encoder::new(&mut v))
                .ok()?;
            Some(v.len())
        })
    });
    g.bench_function("dhcproto_decode_build_encode", |b| {
        b.iter(|| {
            let d = v4::Message::decode(&mut Decoder::new(black_box(&req.bytes))).ok()?;
            let m = offer_dhcproto(&d);
            v.clear();
            m.encode(&mut Encoder::new(&mut v)).ok()?;
            Some(v.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, offer);
criterion_main!(benches);
