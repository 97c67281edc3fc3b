//! One registration: who the client is (MAC and/or client identifier), the group (class)
//! it belongs to, an optional fixed address, and the options it gets with the highest
//! precedence (host-name, next-server / boot file, generic `code -> bytes`).
//!
//! The JSON form (one object; the JSON Lines import, the export and the log use it):
//! `{"mac":"00:11:22:33:44:55","client-id":"01001122334455","group":"modem",
//!   "fixed-address":"10.0.0.5","host-name":"cm-1","next-server":"10.0.0.1",
//!   "boot-file":"docsis.cfg","options":{"4":"0a000001"}}`
//! (client-id and option values in hex; every field but `group` and one of `mac` /
//! `client-id` may be left out).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use lease_store::ClientKey;
use serde::{Deserialize, Serialize};

/// Longest group name.
pub const MAX_GROUP: usize = 64;
/// Longest boot file (the BOOTP `file` field holds 128 bytes with its NUL).
pub const MAX_BOOT_FILE: usize = 127;
/// Longest client identifier accepted.
pub const MAX_CLIENT_ID: usize = 255;
/// Room for a registration's encoded options (host-name included). Replies are at
/// least 548 bytes, so the subnet's options keep room too.
pub const MAX_OPTIONS_BYTES: usize = 255;

/// Option codes a registration may not set: the server writes them itself (pad, mask,
/// requested address, lease times, message type, server id, parameter list, message,
/// max size, T1/T2, client id, relay agent info, end).
const SERVER_OWNED: &[u8] = &[0, 1, 50, 51, 53, 54, 55, 56, 57, 58, 59, 61, 82, 255];

/// A registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Ethernet address (chaddr with htype 1).
    pub mac: Option<[u8; 6]>,
    /// Option 61 exactly as the client sends it (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// The group: a class name the client is a member of.
    pub group: String,
    /// The address this client always gets (when it lies in the client's subnet).
    pub fixed_address: Option<Ipv4Addr>,
    /// Option 12.
    pub host_name: Option<String>,
    /// `siaddr`.
    pub next_server: Option<Ipv4Addr>,
    /// The `file` field.
    pub boot_file: Option<String>,
    /// Other options: code -> value bytes.
    pub options: BTreeMap<u8, Vec<u8>>,
}

/// Which registration an operator names (remove, show): by MAC or by client id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selector {
    /// `aa:bb:cc:dd:ee:ff`.
    Mac(String),
    /// Hex.
    ClientId(String),
}

impl Selector {
    /// The index key it names.
    pub fn key(&self) -> Result<ClientKey, FieldError> {
        match self {
            Selector::Mac(s) => parse_mac(s)
                .map(|m| mac_key(&m))
                .map_err(|m| FieldError::new("mac", m)),
            Selector::ClientId(s) => parse_hex(s)
                .map(|b| ClientKey::from_client_id(&b))
                .map_err(|m| FieldError::new("client-id", m)),
        }
    }
}

/// A field that does not hold what it must.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name (`mac`, `options.43`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A message about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The index key of a MAC (hardware type 1).
pub fn mac_key(mac: &[u8; 6]) -> ClientKey {
    ClientKey::from_hw(1, mac)
}

impl Registration {
    /// The index keys of this registration: client id first, then MAC.
    pub fn keys(&self) -> impl Iterator<Item = ClientKey> + '_ {
        self.client_id
            .as_deref()
            .map(ClientKey::from_client_id)
            .into_iter()
            .chain(self.mac.as_ref().map(mac_key))
    }

    /// Checks the whole record; the first problem found.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.mac.is_none() && self.client_id.is_none() {
            return Err(FieldError::new(
                "mac",
                "a registration needs a mac or a client-id",
            ));
        }
        if let Some(c) = &self.client_id {
            if c.is_empty() || c.len() > MAX_CLIENT_ID {
                return Err(FieldError::new(
                    "client-id",
                    format!("must be 1 to {MAX_CLIENT_ID} bytes"),
                ));
            }
        }
        check_group(&self.group)?;
        if let Some(a) = self.fixed_address {
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return Err(FieldError::new(
                    "fixed-address",
                    format!("{a} cannot be a client's address"),
                ));
            }
        }
        if let Some(h) = &self.host_name {
            check_host_name(h)?;
        }
        if let Some(b) = &self.boot_file {
            if b.is_empty() || b.len() > MAX_BOOT_FILE || b.bytes().any(|c| c == 0) {
                return Err(FieldError::new(
                    "boot-file",
                    format!("must be 1 to {MAX_BOOT_FILE} bytes without NUL"),
                ));
            }
        }
        for (&code, v) in &self.options {
            let field = format!("options.{code}");
            if SERVER_OWNED.contains(&code) {
                return Err(FieldError::new(field, "the server sets this option itself"));
            }
            if code == 12 && self.host_name.is_some() {
                return Err(FieldError::new(field, "conflicts with host-name"));
            }
            if v.is_empty() || v.len() > 255 {
                return Err(FieldError::new(field, "value must be 1 to 255 bytes"));
            }
        }
        if self.encoded_options_len() > MAX_OPTIONS_BYTES {
            return Err(FieldError::new(
                "options",
                format!(
                    "{} bytes encoded, at most {MAX_OPTIONS_BYTES}",
                    self.encoded_options_len()
                ),
            ));
        }
        Ok(())
    }

    fn encoded_options_len(&self) -> usize {
        self.host_name.as_ref().map_or(0, |h| 2 + h.len())
            + self.options.values().map(|v| 2 + v.len()).sum::<usize>()
    }

    /// The options as DHCP TLVs (`code, len, value`), host-name (12) first.
    pub fn encode_options(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_options_len());
        if let Some(h) = &self.host_name {
            out.push(12);
            out.push(h.len() as u8);
            out.extend_from_slice(h.as_bytes());
        }
        for (&c, v) in &self.options {
            out.push(c);
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        out
    }

    /// The JSON form (see the module doc).
    pub fn to_json(&self) -> Json {
        Json {
            mac: self.mac.as_ref().map(fmt_mac),
            client_id: self.client_id.as_deref().map(hex),
            group: self.group.clone(),
            fixed_address: self.fixed_address.map(|a| a.to_string()),
            host_name: self.host_name.clone(),
            next_server: self.next_server.map(|a| a.to_string()),
            boot_file: self.boot_file.clone(),
            options: self
                .options
                .iter()
                .map(|(c, v)| (c.to_string(), hex(v)))
                .collect(),
        }
    }

    /// From the JSON form, each field checked; the first problem found.
    pub fn from_json(j: &Json) -> Result<Self, FieldError> {
        fn field<T>(name: &'static str, r: Result<T, String>) -> Result<T, FieldError> {
            r.map_err(|m| FieldError::new(name, m))
        }
        let mut options = BTreeMap::new();
        for (c, v) in &j.options {
            let code: u8 = c.parse().map_err(|_| {
                FieldError::new(format!("options.{c}"), "option code must be 0-255")
            })?;
            let bytes = parse_hex(v).map_err(|m| FieldError::new(format!("options.{code}"), m))?;
            options.insert(code, bytes);
        }
        let r = Registration {
            mac: j
                .mac
                .as_deref()
                .map(|s| field("mac", parse_mac(s)))
                .transpose()?,
            client_id: j
                .client_id
                .as_deref()
                .map(|s| field("client-id", parse_hex(s)))
                .transpose()?,
            group: j.group.clone(),
            fixed_address: j
                .fixed_address
                .as_deref()
                .map(|s| field("fixed-address", parse_ip(s)))
                .transpose()?,
            host_name: j.host_name.clone(),
            next_server: j
                .next_server
                .as_deref()
                .map(|s| field("next-server", parse_ip(s)))
                .transpose()?,
            boot_file: j.boot_file.clone(),
            options,
        };
        r.validate()?;
        Ok(r)
    }
}

/// The JSON form of a registration, as typed by operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Json {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_file: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

fn check_group(g: &str) -> Result<(), FieldError> {
    let ok = !g.is_empty()
        && g.len() <= MAX_GROUP
        && g.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "group",
            format!("must be 1 to {MAX_GROUP} characters of A-Z a-z 0-9 - _ . :"),
        ))
    }
}

fn check_host_name(h: &str) -> Result<(), FieldError> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "host-name",
            "must be one DNS label: 1 to 63 of A-Z a-z 0-9 -, not starting or ending with -",
        ))
    }
}

/// `aa:bb:cc:dd:ee:ff` (also `-` separated or 12 hex digits).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let b = parse_hex(&digits).map_err(|_| format!("{s:?} is not a MAC address"))?;
    <[u8; 6]>::try_from(b.as_slice()).map_err(|_| format!("{s:?} is not a MAC address (6 bytes)"))
}

/// Lowercase `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Hex digits (optionally `:` separated) to bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let d: Vec<u8> = s.bytes().filter(|&c| c != b':').collect();
    if d.is_empty() || !d.len().is_multiple_of(2) {
        return Err(format!("{s:?} is not an even number of hex digits"));
    }
    d.chunks(2)
        .map(|p| {
            let h = |c: u8| (c as char).to_digit(16);
            match (h(p[0]), h(p[1])) {
                (Some(a), Some(b)) => Ok((a * 16 + b) as u8),
                _ => Err(format!("{s:?} is not hex")),
            }
        })
        .collect()
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            mac: Some([0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            client_id: None,
            group: "modem".into(),
            fixed_address: Some(Ipv4Addr::new(10, 0, 0, 5)),
            host_name: Some("cm-1".into()),
            next_server: Some(Ipv4Addr::new(10, 0, 0, 1)),
            boot_file: Some("docsis.cfg".into()),
            options: [(4u8, vec![10, 0, 0, 1])].into_iter().collect(),
        }
    }

    #[test]
    fn registration_json_round_trips() {
        let r = reg();
        let j = serde_json::to_string(&r.to_json()).unwrap();
        let back: Json = serde_json::from_str(&j).unwrap();
        assert_eq!(Registration::from_json(&back).unwrap(), r);
    }

    #[test]
    fn registration_validation_names_the_field() {
        let mut r = reg();
        r.options.insert(53, vec![1]);
        assert_eq!(r.validate().unwrap_err().field, "options.53");
        let mut r = reg();
        r.mac = None;
        assert_eq!(r.validate().unwrap_err().field, "mac");
        let mut r = reg();
        r.group = "a b".into();
        assert_eq!(r.validate().unwrap_err().field, "group");
        let mut r = reg();
        r.host_name = Some("-x".into());
        assert_eq!(r.validate().unwrap_err().field, "host-name");
        let mut r = reg();
        r.options.insert(43, vec![0; 250]);
        assert_eq!(r.validate().unwrap_err().field, "options");
    }

    #[test]
    fn registration_options_encode_host_name_first() {
        let r = reg();
        assert_eq!(
            r.encode_options(),
            vec![12, 4, b'c', b'm', b'-', b'1', 4, 4, 10, 0, 0, 1]
        );
    }

    #[test]
    fn registration_mac_forms() {
        assert_eq!(
            parse_mac("00-11-22-33-44-55").unwrap(),
            [0, 0x11, 0x22, 0x33, 0x44, 0x55]
        );
        assert_eq!(
            parse_mac("001122334455").unwrap(),
            [0, 0x11, 0x22, 0x33, 0x44, 0x55]
        );
        assert!(parse_mac("00:11:22:33:44").is_err());
        assert!(parse_mac("zz:11:22:33:44:55").is_err());
    }
}
