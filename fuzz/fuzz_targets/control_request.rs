//! Control API requests as the server parses them (`xdhcpd::api::request`): the first byte
//! picks the parser, the rest is a path segment, a query string or a request body. Nothing
//! may panic; a parsed value must be consistent (the page limit in range, a MAC of 1 to 16
//! octets) and a partner-down `since` never in the future.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xdhcpd::api::request;

const NOW: u32 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match pick % 8 {
        0 => {
            let _ = request::parse_ip(&text);
        }
        1 => {
            if let Ok(hw) = request::parse_mac(&text) {
                assert!(
                    !hw.is_empty() && hw.len() <= 16,
                    "MAC of {} octets",
                    hw.len()
                );
            }
        }
        2 => {
            let _ = request::parse_client_id(&text);
        }
        3 => {
            let _ = request::parse_pool_id(&text);
        }
        4 => {
            if let Ok(q) = request::parse_page_query(Some(&text)) {
                assert!((1..=request::MAX_LIMIT).contains(&q.limit));
            }
        }
        5 => {
            if let Ok((Some(since), _)) = request::parse_partner_down(rest, NOW) {
                assert!(since > 0 && since <= NOW, "since {since} in the future");
            }
        }
        6 => {
            let _ = request::parse_empty(rest);
        }
        _ => {
            if let Ok(request::ReconfTarget::Subnet(_, len)) = request::parse_reconfigure(rest) {
                assert!(len <= 32, "prefix length {len}");
            }
        }
    }
});
