//! Messages and binding transactions in decoded form.

use std::net::Ipv4Addr;

use super::msg;

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

impl Message {
    pub fn new(time: u32, xid: u32, body: Body) -> Self {
        Message {
            time,
            xid,
            body,
            unknown: Vec::new(),
        }
    }
}
