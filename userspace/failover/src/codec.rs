//! Wire format of draft-ietf-dhc-failover-12 as ISC dhcpd 4.4 speaks it.
//!
//! Message: `length` u16 (whole message), `type` u8, `payload offset` u8 (12; unknown header
//! bytes up to it are skipped), `time` u32, `xid` u32, then options `code` u16, `length` u16,
//! value. 12..=2048 bytes. All integers big-endian.
//!
//! Decoding never panics: every length is checked before it is used, and errors carry the
//! absolute byte offset in the stream where the problem is.
//!
//! BNDUPD/BNDACK may batch several binding transactions (draft-12 6.3), each starting with an
//! assigned-IP-address option. We decode batches; the engine sends them only to an xdhcpd
//! partner, and one transaction per BNDUPD to others, because ISC dhcpd rejects repeated
//! options in one message.

use std::net::Ipv4Addr;

/// Header length written by us (and by ISC).
pub const HEADER_LEN: usize = 12;
pub const MIN_MESSAGE_LEN: usize = 12;
pub const MAX_MESSAGE_LEN: usize = 2048;
pub const PROTOCOL_VERSION: u8 = 1;
/// Server-flags bit 0.
pub const SERVER_FLAG_STARTUP: u8 = 0x01;
/// DHCP magic cookie that prefixes client-request/reply-options values.
pub const DHCP_MAGIC: [u8; 4] = [99, 130, 83, 99];
/// DHCP option code of relay-agent-information.
pub const DHCP_OPTION_RELAY_AGENT_INFO: u8 = 82;

/// Message type codes (draft-12 6.1).
pub mod msg {
    pub const POOLREQ: u8 = 1;
    pub const POOLRESP: u8 = 2;
    pub const BNDUPD: u8 = 3;
    pub const BNDACK: u8 = 4;
    pub const CONNECT: u8 = 5;
    pub const CONNECTACK: u8 = 6;
    pub const UPDREQALL: u8 = 7;
    pub const UPDDONE: u8 = 8;
    pub const UPDREQ: u8 = 9;
    pub const STATE: u8 = 10;
    pub const CONTACT: u8 = 11;
    pub const DISCONNECT: u8 = 12;
}

/// Option codes (draft-12 section 12).
pub mod opt {
    pub const ADDRESSES_TRANSFERRED: u16 = 1;
    pub const ASSIGNED_IP_ADDRESS: u16 = 2;
    pub const BINDING_STATUS: u16 = 3;
    pub const CLIENT_IDENTIFIER: u16 = 4;
    pub const CLIENT_HARDWARE_ADDRESS: u16 = 5;
    pub const CLTT: u16 = 6;
    pub const REPLY_OPTIONS: u16 = 7;
    pub const REQUEST_OPTIONS: u16 = 8;
    pub const DDNS: u16 = 9;
    pub const DELAYED_SERVICE: u16 = 10;
    pub const HASH_BUCKET_ASSIGNMENT: u16 = 11;
    pub const IP_FLAGS: u16 = 12;
    pub const LEASE_EXPIRATION_TIME: u16 = 13;
    pub const MAX_UNACKED_BNDUPD: u16 = 14;
    pub const MCLT: u16 = 15;
    pub const MESSAGE: u16 = 16;
    pub const MESSAGE_DIGEST: u16 = 17;
    pub const POTENTIAL_EXPIRATION_TIME: u16 = 18;
    pub const RECEIVE_TIMER: u16 = 19;
    pub const PROTOCOL_VERSION: u16 = 20;
    pub const REJECT_REASON: u16 = 21;
    pub const RELATIONSHIP_NAME: u16 = 22;
    pub const SERVER_FLAGS: u16 = 23;
    pub const SERVER_STATE: u16 = 24;
    pub const START_TIME_OF_STATE: u16 = 25;
    pub const TLS_REPLY: u16 = 26;
    pub const TLS_REQUEST: u16 = 27;
    pub const VENDOR_CLASS: u16 = 28;
    pub const VENDOR_OPTIONS: u16 = 29;
}

/// An option this implementation does not interpret, kept verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOption {
    pub code: u16,
    pub data: Vec<u8>,
}

/// DDNS option: 16-bit flags (C=1, A=2, D=4, P=8) and the FQDN in DNS wire encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddns {
    pub flags: u16,
    pub name: Vec<u8>,
}

/// One binding transaction of a BNDUPD, or one address status of a BNDACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingTxn {
    pub addr: Ipv4Addr,
    /// Raw binding-status (1..=7 known); None when absent.
    pub status: Option<u8>,
    pub client_id: Option<Vec<u8>>,
    /// client-hardware-address: hardware type byte then the address.
    pub chaddr: Option<(u8, Vec<u8>)>,
    pub lease_expiry: Option<u32>,
    pub potential_expiry: Option<u32>,
    pub start_time: Option<u32>,
    pub cltt: Option<u32>,
    pub ip_flags: Option<u16>,
    pub ddns: Option<Ddns>,
    /// client-request-options value (magic cookie + DHCP options).
    pub request_options: Option<Vec<u8>>,
    /// client-reply-options value (magic cookie + DHCP options).
    pub reply_options: Option<Vec<u8>>,
    /// BNDACK only: present = rejected.
    pub reject_reason: Option<u8>,
    pub message: Option<Vec<u8>>,
    pub unknown: Vec<RawOption>,
}

impl BindingTxn {
    pub fn new(addr: Ipv4Addr) -> Self {
        BindingTxn {
            addr,
            status: None,
            client_id: None,
            chaddr: None,
            lease_expiry: None,
            potential_expiry: None,
            start_time: None,
            cltt: None,
            ip_flags: None,
            ddns: None,
            request_options: None,
            reply_options: None,
            reject_reason: None,
            message: None,
            unknown: Vec::new(),
        }
    }
}

/// Options of CONNECT and CONNECTACK (the same set, see draft-12 tables 7.8-1 and 7.9-1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    pub relationship_name: Option<Vec<u8>>,
    pub max_unacked: Option<u32>,
    pub receive_timer: Option<u32>,
    pub vendor_class: Option<Vec<u8>>,
    pub protocol_version: Option<u8>,
    pub tls_request: Option<u8>,
    pub tls_reply: Option<u8>,
    pub mclt: Option<u32>,
    /// 32 bytes, RFC 3074 bitmap (bit i of byte i/8, least significant first).
    pub hba: Option<Vec<u8>>,
    pub delayed_service: Option<u8>,
    pub reject_reason: Option<u8>,
    pub message: Option<Vec<u8>>,
}

/// Message body by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    PoolReq,
    PoolResp {
        addresses_transferred: u32,
    },
    BndUpd(Vec<BindingTxn>),
    BndAck(Vec<BindingTxn>),
    Connect(ConnectInfo),
    ConnectAck(ConnectInfo),
    UpdReqAll,
    UpdDone,
    UpdReq,
    State {
        state: u8,
        flags: u8,
        start_time: u32,
    },
    Contact,
    Disconnect {
        reject_reason: u8,
        message: Option<Vec<u8>>,
    },
    /// A type in 128..=255 this implementation does not know: the draft says ignore it.
    Optional {
        msg_type: u8,
    },
}

impl Body {
    pub fn msg_type(&self) -> u8 {
        match self {
            Body::PoolReq => msg::POOLREQ,
            Body::PoolResp { .. } => msg::POOLRESP,
            Body::BndUpd(_) => msg::BNDUPD,
            Body::BndAck(_) => msg::BNDACK,
            Body::Connect(_) => msg::CONNECT,
            Body::ConnectAck(_) => msg::CONNECTACK,
            Body::UpdReqAll => msg::UPDREQALL,
            Body::UpdDone => msg::UPDDONE,
            Body::UpdReq => msg::UPDREQ,
            Body::State { .. } => msg::STATE,
            Body::Contact => msg::CONTACT,
            Body::Disconnect { .. } => msg::DISCONNECT,
            Body::Optional { msg_type } => *msg_type,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Body::PoolReq => "POOLREQ",
            Body::PoolResp { .. } => "POOLRESP",
            Body::BndUpd(_) => "BNDUPD",
            Body::BndAck(_) => "BNDACK",
            Body::Connect(_) => "CONNECT",
            Body::ConnectAck(_) => "CONNECTACK",
            Body::UpdReqAll => "UPDREQALL",
            Body::UpdDone => "UPDDONE",
            Body::UpdReq => "UPDREQ",
            Body::State { .. } => "STATE",
            Body::Contact => "CONTACT",
            Body::Disconnect { .. } => "DISCONNECT",
            Body::Optional { .. } => "optional",
        }
    }
}

/// One failover message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub time: u32,
    pub xid: u32,
    pub body: Body,
    /// Message-level options we did not interpret (skipped, kept for inspection).
    pub unknown: Vec<RawOption>,
}

/// Why bytes could not be decoded. Offsets are absolute positions in the byte stream fed to
/// the [`Decoder`] (or in the slice given to [`decode_message`]). Any error means the
/// connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("failover message at offset {offset}: length {len} outside 12..=2048")]
    BadLength { offset: u64, len: u16 },
    #[error("failover message at offset {offset}: payload offset {payload_offset} outside 12..=length {len}")]
    BadPayloadOffset {
        offset: u64,
        payload_offset: u8,
        len: u16,
    },
    #[error("failover message at offset {offset}: unknown mandatory message type {msg_type}")]
    UnknownType { offset: u64, msg_type: u8 },
    #[error("failover option at offset {offset}: header or value runs past the message end")]
    OptionOverflow { offset: u64 },
    #[error("failover option {code} at offset {offset}: length {len}, expected {expected}")]
    BadOptionLength {
        offset: u64,
        code: u16,
        len: u16,
        expected: &'static str,
    },
    #[error("failover option {code} at offset {offset}: appears twice")]
    DuplicateOption { offset: u64, code: u16 },
    #[error("failover {msg} message at offset {offset}: required option {code} missing")]
    MissingOption {
        offset: u64,
        msg: &'static str,
        code: u16,
    },
    #[error("failover {msg} message at offset {offset}: option {code} appears before any assigned-IP-address")]
    OrphanBindingOption {
        offset: u64,
        msg: &'static str,
        code: u16,
    },
}

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("failover {msg} message would be {len} bytes, over the 2048-byte limit")]
    TooLong { msg: &'static str, len: usize },
    #[error("failover option {code} value is {len} bytes, over 65535")]
    OptionTooLong { code: u16, len: usize },
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_opt(out: &mut Vec<u8>, code: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::OptionTooLong {
        code,
        len: value.len(),
    })?;
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, code: u16, v: u32) -> Result<(), EncodeError> {
    put_opt(out, code, &v.to_be_bytes())
}

fn put_u8(out: &mut Vec<u8>, code: u16, v: u8) -> Result<(), EncodeError> {
    put_opt(out, code, &[v])
}

/// Appends one binding transaction as it appears inside a BNDUPD/BNDACK (for sizing a batch).
pub fn encode_txn(out: &mut Vec<u8>, t: &BindingTxn) -> Result<(), EncodeError> {
    put_txn(out, t)
}

fn put_txn(out: &mut Vec<u8>, t: &BindingTxn) -> Result<(), EncodeError> {
    // assigned-IP-address MUST come first in each transaction (draft-12 6.3).
    put_opt(out, opt::ASSIGNED_IP_ADDRESS, &t.addr.octets())?;
    if let Some(s) = t.status {
        put_u8(out, opt::BINDING_STATUS, s)?;
    }
    if let Some(id) = &t.client_id {
        put_opt(out, opt::CLIENT_IDENTIFIER, id)?;
    }
    if let Some((htype, hw)) = &t.chaddr {
        let mut v = Vec::with_capacity(hw.len() + 1);
        v.push(*htype);
        v.extend_from_slice(hw);
        put_opt(out, opt::CLIENT_HARDWARE_ADDRESS, &v)?;
    }
    if let Some(v) = t.lease_expiry {
        put_u32(out, opt::LEASE_EXPIRATION_TIME, v)?;
    }
    if let Some(v) = t.potential_expiry {
        put_u32(out, opt::POTENTIAL_EXPIRATION_TIME, v)?;
    }
    if let Some(v) = t.start_time {
        put_u32(out, opt::START_TIME_OF_STATE, v)?;
    }
    if let Some(v) = t.cltt {
        put_u32(out, opt::CLTT, v)?;
    }
    if let Some(v) = t.ip_flags {
        put_opt(out, opt::IP_FLAGS, &v.to_be_bytes())?;
    }
    if let Some(d) = &t.ddns {
        let mut v = Vec::with_capacity(d.name.len() + 2);
        v.extend_from_slice(&d.flags.to_be_bytes());
        v.extend_from_slice(&d.name);
        put_opt(out, opt::DDNS, &v)?;
    }
    if let Some(v) = &t.request_options {
        put_opt(out, opt::REQUEST_OPTIONS, v)?;
    }
    if let Some(v) = &t.reply_options {
        put_opt(out, opt::REPLY_OPTIONS, v)?;
    }
    if let Some(r) = t.reject_reason {
        put_u8(out, opt::REJECT_REASON, r)?;
    }
    if let Some(m) = &t.message {
        put_opt(out, opt::MESSAGE, m)?;
    }
    for u in &t.unknown {
        put_opt(out, u.code, &u.data)?;
    }
    Ok(())
}

fn put_connect(out: &mut Vec<u8>, c: &ConnectInfo) -> Result<(), EncodeError> {
    // Same order as ISC dhcpd.
    if let Some(v) = &c.relationship_name {
        put_opt(out, opt::RELATIONSHIP_NAME, v)?;
    }
    if let Some(v) = c.max_unacked {
        put_u32(out, opt::MAX_UNACKED_BNDUPD, v)?;
    }
    if let Some(v) = c.receive_timer {
        put_u32(out, opt::RECEIVE_TIMER, v)?;
    }
    if let Some(v) = &c.vendor_class {
        put_opt(out, opt::VENDOR_CLASS, v)?;
    }
    if let Some(v) = c.protocol_version {
        put_u8(out, opt::PROTOCOL_VERSION, v)?;
    }
    if let Some(v) = c.tls_request {
        put_u8(out, opt::TLS_REQUEST, v)?;
    }
    if let Some(v) = c.tls_reply {
        put_u8(out, opt::TLS_REPLY, v)?;
    }
    if let Some(v) = c.mclt {
        put_u32(out, opt::MCLT, v)?;
    }
    if let Some(v) = &c.hba {
        put_opt(out, opt::HASH_BUCKET_ASSIGNMENT, v)?;
    }
    if let Some(v) = c.delayed_service {
        put_u8(out, opt::DELAYED_SERVICE, v)?;
    }
    if let Some(v) = c.reject_reason {
        put_u8(out, opt::REJECT_REASON, v)?;
    }
    if let Some(v) = &c.message {
        put_opt(out, opt::MESSAGE, v)?;
    }
    Ok(())
}

impl Message {
    pub fn new(time: u32, xid: u32, body: Body) -> Self {
        Message {
            time,
            xid,
            body,
            unknown: Vec::new(),
        }
    }

    /// Appends the encoded message to `out`; returns its length. On error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        let r = self.encode_inner(out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn encode_inner(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, self.body.msg_type(), HEADER_LEN as u8]);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.xid.to_be_bytes());
        match &self.body {
            Body::PoolReq
            | Body::UpdReqAll
            | Body::UpdDone
            | Body::UpdReq
            | Body::Contact
            | Body::Optional { .. } => {}
            Body::PoolResp {
                addresses_transferred,
            } => put_u32(out, opt::ADDRESSES_TRANSFERRED, *addresses_transferred)?,
            Body::BndUpd(txns) | Body::BndAck(txns) => {
                for t in txns {
                    put_txn(out, t)?;
                }
            }
            Body::Connect(c) | Body::ConnectAck(c) => put_connect(out, c)?,
            Body::State {
                state,
                flags,
                start_time,
            } => {
                put_u8(out, opt::SERVER_STATE, *state)?;
                put_u8(out, opt::SERVER_FLAGS, *flags)?;
                put_u32(out, opt::START_TIME_OF_STATE, *start_time)?;
            }
            Body::Disconnect {
                reject_reason,
                message,
            } => {
                put_u8(out, opt::REJECT_REASON, *reject_reason)?;
                if let Some(m) = message {
                    put_opt(out, opt::MESSAGE, m)?;
                }
            }
        }
        for u in &self.unknown {
            put_opt(out, u.code, &u.data)?;
        }
        let len = out.len() - start;
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong {
                msg: self.body.name(),
                len,
            });
        }
        out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(len)
    }

    /// Encodes into a fresh vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v)?;
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct Opt<'a> {
    code: u16,
    offset: u64,
    data: &'a [u8],
}

fn be_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn want_len(o: &Opt<'_>, n: usize, expected: &'static str) -> Result<(), DecodeError> {
    if o.data.len() == n {
        Ok(())
    } else {
        Err(DecodeError::BadOptionLength {
            offset: o.offset,
            code: o.code,
            len: o.data.len() as u16,
            expected,
        })
    }
}

fn get_u32(o: &Opt<'_>) -> Result<u32, DecodeError> {
    want_len(o, 4, "4")?;
    Ok(be_u32(o.data))
}

fn get_u8(o: &Opt<'_>) -> Result<u8, DecodeError> {
    want_len(o, 1, "1")?;
    Ok(o.data[0])
}

fn set_once<T>(slot: &mut Option<T>, v: T, o: &Opt<'_>) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateOption {
            offset: o.offset,
            code: o.code,
        });
    }
    *slot = Some(v);
    Ok(())
}

/// Interprets one option inside a binding transaction. Returns false when the code is not a
/// binding option (the caller keeps it as unknown).
fn txn_option(t: &mut BindingTxn, o: &Opt<'_>) -> Result<bool, DecodeError> {
    match o.code {
        opt::BINDING_STATUS => set_once(&mut t.status, get_u8(o)?, o)?,
        opt::CLIENT_IDENTIFIER => set_once(&mut t.client_id, o.data.to_vec(), o)?,
        opt::CLIENT_HARDWARE_ADDRESS => {
            let Some((&htype, hw)) = o.data.split_first() else {
                return Err(DecodeError::BadOptionLength {
                    offset: o.offset,
                    code: o.code,
                    len: 0,
                    expected: ">= 1",
                });
            };
            set_once(&mut t.chaddr, (htype, hw.to_vec()), o)?
        }
        opt::LEASE_EXPIRATION_TIME => set_once(&mut t.lease_expiry, get_u32(o)?, o)?,
        opt::POTENTIAL_EXPIRATION_TIME => set_once(&mut t.potential_expiry, get_u32(o)?, o)?,
        opt::START_TIME_OF_STATE => set_once(&mut t.start_time, get_u32(o)?, o)?,
        opt::CLTT => set_once(&mut t.cltt, get_u32(o)?, o)?,
        opt::IP_FLAGS => {
            want_len(o, 2, "2")?;
            set_once(&mut t.ip_flags, be_u16(o.data), o)?
        }
        opt::DDNS => {
            if o.data.len() < 2 {
                return Err(DecodeError::BadOptionLength {
                    offset: o.offset,
                    code: o.code,
                    len: o.data.len() as u16,
                    expected: ">= 2",
                });
            }
            let d = Ddns {
                flags: be_u16(o.data),
                name: o.data[2..].to_vec(),
            };
            set_once(&mut t.ddns, d, o)?
        }
        opt::REQUEST_OPTIONS => set_once(&mut t.request_options, o.data.to_vec(), o)?,
        opt::REPLY_OPTIONS => set_once(&mut t.reply_options, o.data.to_vec(), o)?,
        opt::REJECT_REASON => set_once(&mut t.reject_reason, get_u8(o)?, o)?,
        opt::MESSAGE => set_once(&mut t.message, o.data.to_vec(), o)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn decode_txns(
    opts: &[Opt<'_>],
    msg_name: &'static str,
    unknown: &mut Vec<RawOption>,
) -> Result<Vec<BindingTxn>, DecodeError> {
    let mut txns: Vec<BindingTxn> = Vec::new();
    for o in opts {
        if o.code == opt::ASSIGNED_IP_ADDRESS {
            want_len(o, 4, "4 (IPv4)")?;
            let a = Ipv4Addr::new(o.data[0], o.data[1], o.data[2], o.data[3]);
            txns.push(BindingTxn::new(a));
            continue;
        }
        match txns.last_mut() {
            Some(t) => {
                if !txn_option(t, o)? {
                    t.unknown.push(RawOption {
                        code: o.code,
                        data: o.data.to_vec(),
                    });
                }
            }
            None => {
                // Message-level options before the first address: only non-binding options.
                let mut probe = BindingTxn::new(Ipv4Addr::UNSPECIFIED);
                if txn_option(&mut probe, o)? {
                    return Err(DecodeError::OrphanBindingOption {
                        offset: o.offset,
                        msg: msg_name,
                        code: o.code,
                    });
                }
                unknown.push(RawOption {
                    code: o.code,
                    data: o.data.to_vec(),
                });
            }
        }
    }
    Ok(txns)
}

fn decode_connect(
    opts: &[Opt<'_>],
    unknown: &mut Vec<RawOption>,
) -> Result<ConnectInfo, DecodeError> {
    let mut c = ConnectInfo::default();
    for o in opts {
        match o.code {
            opt::RELATIONSHIP_NAME => set_once(&mut c.relationship_name, o.data.to_vec(), o)?,
            opt::MAX_UNACKED_BNDUPD => set_once(&mut c.max_unacked, get_u32(o)?, o)?,
            opt::RECEIVE_TIMER => set_once(&mut c.receive_timer, get_u32(o)?, o)?,
            opt::VENDOR_CLASS => set_once(&mut c.vendor_class, o.data.to_vec(), o)?,
            opt::PROTOCOL_VERSION => set_once(&mut c.protocol_version, get_u8(o)?, o)?,
            opt::TLS_REQUEST => {
                // The draft shows one byte; tolerate a two-byte form by reading the first.
                if o.data.is_empty() || o.data.len() > 2 {
                    return Err(DecodeError::BadOptionLength {
                        offset: o.offset,
                        code: o.code,
                        len: o.data.len() as u16,
                        expected: "1 or 2",
                    });
                }
                set_once(&mut c.tls_request, o.data[0], o)?
            }
            opt::TLS_REPLY => {
                if o.data.is_empty() || o.data.len() > 2 {
                    return Err(DecodeError::BadOptionLength {
                        offset: o.offset,
                        code: o.code,
                        len: o.data.len() as u16,
                        expected: "1 or 2",
                    });
                }
                set_once(&mut c.tls_reply, o.data[0], o)?
            }
            opt::MCLT => set_once(&mut c.mclt, get_u32(o)?, o)?,
            opt::HASH_BUCKET_ASSIGNMENT => set_once(&mut c.hba, o.data.to_vec(), o)?,
            opt::DELAYED_SERVICE => set_once(&mut c.delayed_service, get_u8(o)?, o)?,
            opt::REJECT_REASON => set_once(&mut c.reject_reason, get_u8(o)?, o)?,
            opt::MESSAGE => set_once(&mut c.message, o.data.to_vec(), o)?,
            _ => unknown.push(RawOption {
                code: o.code,
                data: o.data.to_vec(),
            }),
        }
    }
    Ok(c)
}

/// Decodes exactly one complete message from `frame` (its length field must equal
/// `frame.len()`). `base` is the stream offset of `frame[0]`, used in error reports.
pub fn decode_message(frame: &[u8], base: u64) -> Result<Message, DecodeError> {
    if frame.len() < MIN_MESSAGE_LEN {
        return Err(DecodeError::BadLength {
            offset: base,
            len: frame.len() as u16,
        });
    }
    let len = be_u16(frame);
    if (len as usize) < MIN_MESSAGE_LEN
        || (len as usize) > MAX_MESSAGE_LEN
        || len as usize != frame.len()
    {
        return Err(DecodeError::BadLength { offset: base, len });
    }
    let msg_type = frame[2];
    let payoff = frame[3];
    if (payoff as usize) < HEADER_LEN || payoff as u16 > len {
        return Err(DecodeError::BadPayloadOffset {
            offset: base,
            payload_offset: payoff,
            len,
        });
    }
    let time = be_u32(&frame[4..]);
    let xid = be_u32(&frame[8..]);

    // Split the payload into options first; every bound is checked here.
    let mut opts: Vec<Opt<'_>> = Vec::new();
    let mut i = payoff as usize;
    let mut digest_seen = false;
    while i < frame.len() {
        let at = base + i as u64;
        if i + 4 > frame.len() {
            return Err(DecodeError::OptionOverflow { offset: at });
        }
        let code = be_u16(&frame[i..]);
        let olen = be_u16(&frame[i + 2..]) as usize;
        let end = i + 4 + olen;
        if end > frame.len() {
            return Err(DecodeError::OptionOverflow { offset: at });
        }
        if code == opt::MESSAGE_DIGEST {
            // Digests (HMAC-MD5) are not supported; like ISC we skip them.
            digest_seen = true;
        } else {
            opts.push(Opt {
                code,
                offset: at,
                data: &frame[i + 4..end],
            });
        }
        i = end;
    }
    let _ = digest_seen;

    let mut unknown = Vec::new();
    let body = match msg_type {
        msg::BNDUPD => Body::BndUpd(decode_txns(&opts, "BNDUPD", &mut unknown)?),
        msg::BNDACK => Body::BndAck(decode_txns(&opts, "BNDACK", &mut unknown)?),
        msg::CONNECT => Body::Connect(decode_connect(&opts, &mut unknown)?),
        msg::CONNECTACK => Body::ConnectAck(decode_connect(&opts, &mut unknown)?),
        msg::POOLRESP => {
            let mut n = None;
            for o in &opts {
                if o.code == opt::ADDRESSES_TRANSFERRED {
                    set_once(&mut n, get_u32(o)?, o)?;
                } else {
                    unknown.push(RawOption {
                        code: o.code,
                        data: o.data.to_vec(),
                    });
                }
            }
            let addresses_transferred = n.ok_or(DecodeError::MissingOption {
                offset: base,
                msg: "POOLRESP",
                code: opt::ADDRESSES_TRANSFERRED,
            })?;
            Body::PoolResp {
                addresses_transferred,
            }
        }
        msg::STATE => {
            let (mut s, mut f, mut t) = (None, None, None);
            for o in &opts {
                match o.code {
                    opt::SERVER_STATE => set_once(&mut s, get_u8(o)?, o)?,
                    opt::SERVER_FLAGS => set_once(&mut f, get_u8(o)?, o)?,
                    opt::START_TIME_OF_STATE => set_once(&mut t, get_u32(o)?, o)?,
                    _ => unknown.push(RawOption {
                        code: o.code,
                        data: o.data.to_vec(),
                    }),
                }
            }
            let state = s.ok_or(DecodeError::MissingOption {
                offset: base,
                msg: "STATE",
                code: opt::SERVER_STATE,
            })?;
            Body::State {
                state,
                flags: f.unwrap_or(0),
                start_time: t.unwrap_or(0),
            }
        }
        msg::DISCONNECT => {
            let (mut r, mut m) = (None, None);
            for o in &opts {
                match o.code {
                    opt::REJECT_REASON => set_once(&mut r, get_u8(o)?, o)?,
                    opt::MESSAGE => set_once(&mut m, o.data.to_vec(), o)?,
                    _ => unknown.push(RawOption {
                        code: o.code,
                        data: o.data.to_vec(),
                    }),
                }
            }
            Body::Disconnect {
                reject_reason: r.unwrap_or(254),
                message: m,
            }
        }
        msg::POOLREQ | msg::UPDREQALL | msg::UPDDONE | msg::UPDREQ | msg::CONTACT => {
            unknown.extend(opts.iter().map(|o| RawOption {
                code: o.code,
                data: o.data.to_vec(),
            }));
            match msg_type {
                msg::POOLREQ => Body::PoolReq,
                msg::UPDREQALL => Body::UpdReqAll,
                msg::UPDDONE => Body::UpdDone,
                msg::UPDREQ => Body::UpdReq,
                _ => Body::Contact,
            }
        }
        t if t >= 128 => {
            unknown.extend(opts.iter().map(|o| RawOption {
                code: o.code,
                data: o.data.to_vec(),
            }));
            Body::Optional { msg_type: t }
        }
        t => {
            return Err(DecodeError::UnknownType {
                offset: base,
                msg_type: t,
            })
        }
    };
    Ok(Message {
        time,
        xid,
        body,
        unknown,
    })
}

/// Streaming decoder over a TCP byte stream: feed any chunking, get whole messages out.
/// After an error the decoder stays failed (the connection must be dropped).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Decoded bytes at the front of `buf`, dropped at the next `push` (dropping them per
    /// message moved the rest of a 16 KB read each time: 6% of the driver's CPU).
    start: usize,
    /// Stream offset of `buf[start]`.
    base: u64,
    failed: Option<DecodeError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered but not yet decoded (a partial message).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = &self.buf[self.start..];
        if rest.len() < 2 {
            return Ok(None);
        }
        let len = be_u16(rest) as usize;
        if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&len) {
            let e = DecodeError::BadLength {
                offset: self.base,
                len: len as u16,
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        if rest.len() < len {
            return Ok(None);
        }
        let r = decode_message(&rest[..len], self.base);
        self.start += len;
        self.base += len as u64;
        match r {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
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
