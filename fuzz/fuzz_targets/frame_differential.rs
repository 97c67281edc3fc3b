//! Raw Ethernet frames into both `RxFrame::parse` (the direct parser) and the etherparse-based
//! parser it replaced (`xdhcpd_io::frame::reference`): the same frames taken with the same
//! fields, the same refused with the same reason, apart from the differences in the reason
//! documented at `RxFrame::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdhcpd_io::frame::reference;

fuzz_target!(|frame: &[u8]| {
    if let Err(e) = reference::compare(frame) {
        panic!("{e}");
    }
});
