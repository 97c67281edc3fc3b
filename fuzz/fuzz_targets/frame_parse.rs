//! Raw Ethernet frames into `RxFrame::parse` and the AF_XDP driver's `FrameResponder`, which
//! parses, copies the DHCP payload out and frames a reply in place in the same buffer (as
//! in a UMEM frame). Nothing may panic; what the parser returns must lie inside the frame,
//! and every reply frame must parse again.
#![no_main]

use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xdhcpd::server::packet_io::xsk::FrameResponder;
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_dhcpv4::{Decision, Delivery};
use xdhcpd_io::frame::RxFrame;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Length of the reply the fake engine writes.
    reply_len: u16,
    /// Where the reply goes (selects the Delivery variant).
    to: u8,
    frame: Vec<u8>,
}

fuzz_target!(|inp: Input| {
    let frame = &inp.frame[..];
    if let Ok(rx) = RxFrame::parse(frame) {
        let range = frame.as_ptr_range();
        let p = rx.payload.as_ptr_range();
        assert!(
            range.start <= p.start && p.end <= range.end,
            "payload outside the frame"
        );
        assert!(rx.vlan_tags().len() <= 8);
    }
    // The driver's way: the frame in a 2 KiB buffer (a UMEM frame), the reply in place.
    let mut umem = [0u8; 2048];
    let n = frame.len().min(umem.len());
    umem[..n].copy_from_slice(&frame[..n]);
    let mut fr = FrameResponder::new(
        [2, 0, 0, 0, 0, 1],
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    let reply_len = usize::from(inp.reply_len);
    let to = match inp.to % 4 {
        0 => Delivery::Broadcast,
        1 => Delivery::Relay(Ipv4Addr::new(10, 1, 0, 1)),
        2 => Delivery::Unicast(Ipv4Addr::new(10, 0, 0, 9)),
        _ => Delivery::ToClient {
            ip: Ipv4Addr::new(10, 0, 0, 9),
            mac: [2, 0, 0, 0, 0, 9],
        },
    };
    let mut respond = |_meta: &xdhcpd_dhcpv4::RxMeta, payload: &[u8], out: &mut [u8]| {
        let len = reply_len.min(out.len());
        let k = payload.len().min(len);
        out[..k].copy_from_slice(&payload[..k]);
        Decision::Reply {
            len,
            kind: MessageType::Offer,
            to,
        }
    };
    if let Some(len) = fr.answer(&mut umem, n, &mut respond) {
        assert!(len <= umem.len());
        let r = RxFrame::parse(&umem[..len]).expect("a reply frame we wrote parses");
        assert_eq!(r.src_port, 67);
        assert!(r.payload.len() <= reply_len);
    }
});
