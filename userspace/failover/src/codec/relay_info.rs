//! Option 82 (relay agent information) inside a client-request-options value.

/// DHCP magic cookie that prefixes client-request/reply-options values.
pub const DHCP_MAGIC: [u8; 4] = [99, 130, 83, 99];
/// DHCP option code of relay-agent-information.
pub const DHCP_OPTION_RELAY_AGENT_INFO: u8 = 82;
/// DHCP option code of host-name.
pub const DHCP_OPTION_HOST_NAME: u8 = 12;
/// DHCP option code of vendor-class-identifier.
pub const DHCP_OPTION_VENDOR_CLASS: u8 = 60;

/// Builds a client-request-options value with the client's option 82 (whole), host name
/// (option 12) and vendor class (option 60), each only when present; `None` when none is.
/// A value longer than 255 bytes cannot be a DHCP option and is left out.
pub fn request_options_with_client_data(
    rai: &[u8],
    host_name: &[u8],
    vendor_class: &[u8],
) -> Option<Vec<u8>> {
    let parts = [
        (DHCP_OPTION_RELAY_AGENT_INFO, rai),
        (DHCP_OPTION_HOST_NAME, host_name),
        (DHCP_OPTION_VENDOR_CLASS, vendor_class),
    ];
    let ok = |v: &[u8]| !v.is_empty() && v.len() <= 255;
    if !parts.iter().any(|(_, v)| ok(v)) {
        return None;
    }
    let mut out = Vec::with_capacity(4 + parts.iter().map(|(_, v)| 2 + v.len()).sum::<usize>());
    out.extend_from_slice(&DHCP_MAGIC);
    for (code, v) in parts {
        if ok(v) {
            out.push(code);
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
    }
    Some(out)
}

/// Option 82, host name and vendor class found in a client-request-options value (each empty
/// when absent; all empty when the value is not a well-formed options blob).
pub fn client_data_from_request_options(v: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    if v.len() < 4 || v[..4] != DHCP_MAGIC {
        return out;
    }
    let mut i = 4;
    while i < v.len() {
        let code = v[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 || i + 1 >= v.len() {
            break;
        }
        let l = v[i + 1] as usize;
        let end = i + 2 + l;
        if end > v.len() {
            return (Vec::new(), Vec::new(), Vec::new());
        }
        let val = v[i + 2..end].to_vec();
        match code {
            DHCP_OPTION_RELAY_AGENT_INFO => out.0 = val,
            DHCP_OPTION_HOST_NAME => out.1 = val,
            DHCP_OPTION_VENDOR_CLASS => out.2 = val,
            _ => {}
        }
        i = end;
    }
    out
}

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
