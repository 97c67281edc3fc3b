//! Ethernet/VLAN/IPv4/UDP: `RxFrame::parse` of a received DHCP frame and
//! `write_ipv4_udp_headers` (IPv4 header checksum and UDP checksum over a
//! 300-byte reply) as the AF_XDP worker does per packet.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdhcpd_benches::{build, frame_around, request_addrs, Req, FRAME_SIZE, SERVER_ID, SERVER_MAC};
use xdhcpd_io::frame::{write_ipv4_udp_headers, FrameLayout, Ipv4UdpAddrs, RxFrame};

const ONE_TAG: [u8; 4] = [0x81, 0x00, 0x00, 0x64];
const TWO_TAGS: [u8; 8] = [0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x64];

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/parse");
    g.throughput(Throughput::Elements(1));
    let r = Req::discover(0x42);
    let d = build(&r);
    for (name, tags) in [
        ("untagged", &[][..]),
        ("vlan", &ONE_TAG[..]),
        ("qinq", &TWO_TAGS[..]),
    ] {
        let (f, n) = match frame_around(&d.bytes, tags, &request_addrs(&r)) {
            Ok(x) => x,
            Err(e) => panic!("bench frame: {e}"),
        };
        let frame = &f[..n];
        assert!(RxFrame::parse(frame).is_ok());
        g.bench_function(format!("rxframe_parse/{name}"), |b| {
            b.iter(|| {
                RxFrame::parse(black_box(frame))
                    .ok()
                    .map(|rx| rx.payload.len())
            })
        });
    }
    g.finish();
}

fn write(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/write_headers");
    g.throughput(Throughput::Elements(1));
    let addrs = Ipv4UdpAddrs {
        src_mac: SERVER_MAC,
        dst_mac: [0xff; 6],
        src_ip: SERVER_ID,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: 67,
        dst_port: 68,
    };
    for (name, tags, payload_len) in [
        ("untagged_300", &[][..], 300usize),
        ("vlan_300", &ONE_TAG[..], 300),
        ("untagged_548", &[][..], 548),
    ] {
        let mut f = vec![0u8; FRAME_SIZE];
        let off = FrameLayout::new(tags.len()).payload_offset();
        for (i, b) in f[off..off + payload_len].iter_mut().enumerate() {
            *b = i as u8;
        }
        g.bench_function(format!("ipv4_udp_checksums/{name}"), |b| {
            b.iter(|| {
                write_ipv4_udp_headers(black_box(&mut f), tags, black_box(&addrs), payload_len).ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, write);
criterion_main!(benches);
