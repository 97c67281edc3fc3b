//! Raw bytes into the DHCPv4 wire view: `Message::new_checked`, every accessor, the option
//! walk (with option 52 overload into `file` and `sname`), the option 82 sub-option walk, and
//! a reply started from the message. Nothing may panic; the walk must stay inside the buffer
//! and end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdhcpd_dhcpv4::wire::{opt, Message, ReplyWriter, SubOptionIter, MIN_BOOTP_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::new_checked(data) else {
        return;
    };
    let _ = (m.op(), m.htype(), m.hops(), m.xid(), m.secs(), m.flags());
    let _ = (
        m.ciaddr(),
        m.yiaddr(),
        m.siaddr(),
        m.giaddr(),
        m.broadcast_flag(),
    );
    assert!(m.chaddr().len() <= 16);
    let _ = (m.chaddr_field(), m.sname(), m.file());
    let mut items = 0usize;
    for item in m.options() {
        items += 1;
        // Each option takes at least two bytes of the three regions together.
        assert!(items <= data.len(), "option walk does not end");
        let Ok((code, val, offset)) = item else {
            break;
        };
        assert!(offset < data.len());
        assert!(val.len() <= 255);
        if code == opt::RELAY_AGENT_INFO {
            for sub in SubOptionIter::new(val) {
                if sub.is_err() {
                    break;
                }
            }
        }
    }
    if let Ok(sum) = m.summary() {
        // A reply written from this request must parse again.
        let mut out = [0u8; 1500];
        let limit = sum.max_message_size.map_or(548, usize::from);
        if let Ok(mut w) = ReplyWriter::new(&mut out, &m, limit) {
            let _ = w.option(opt::MESSAGE_TYPE, &[2]);
            if let Some(ri) = sum.relay_agent_info {
                w.option_if_room(opt::RELAY_AGENT_INFO, ri);
            }
            if let Some(pl) = sum.parameter_list {
                w.option_if_room(opt::PARAMETER_LIST, pl);
            }
            let len = w.finish();
            assert!(len >= MIN_BOOTP_LEN && len <= out.len());
            let r = Message::new_checked(&out[..len]).expect("our reply parses");
            r.summary().expect("our reply's options parse");
        }
    }
});
