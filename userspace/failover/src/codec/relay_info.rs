//! Option 82 (relay agent information) inside a client-request-options value.

/// DHCP magic cookie that prefixes client-request/reply-options values.
pub const DHCP_MAGIC: [u8; 4] = [99, 130, 83, 99];
/// DHCP option code of relay-agent-information.
pub const DHCP_OPTION_RELAY_AGENT_INFO: u8 = 82;

/// Builds a client-request-options value carrying only option 82 (relay agent information).
/// Values longer than 255 bytes cannot be a DHCP option and are dropped.
pub fn request_options_with_relay_info(rai: &[u8]) -> Option<Vec<u8>> {
    if rai.is_empty() || rai.len() > 255 {
        return None;
    }
    let mut v = Vec::with_capacity(6 + rai.len());
    v.extend_from_slice(&DHCP_MAGIC);
    v.push(DHCP_OPTION_RELAY_AGENT_INFO);
    v.push(rai.len() as u8);
    v.extend_from_slice(rai);
    Some(v)
}

/// Finds option 82 in a client-request-options value (magic cookie + DHCP options).
pub fn relay_info_from_request_options(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 4 || v[..4] != DHCP_MAGIC {
        return None;
    }
    let mut i = 4;
    while i < v.len() {
        let code = v[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 || i + 1 >= v.len() {
            return None;
        }
        let l = v[i + 1] as usize;
        let end = i + 2 + l;
        if end > v.len() {
            return None;
        }
        if code == DHCP_OPTION_RELAY_AGENT_INFO {
            return Some(v[i + 2..end].to_vec());
        }
        i = end;
    }
    None
}
