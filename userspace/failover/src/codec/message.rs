//! Messages and binding transactions in decoded form.

use std::net::Ipv4Addr;

use super::msg;

/// An option this implementation does not interpret, kept verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOption {
    /// Option code (see [`opt`](super::opt)).
    pub code: u16,
    /// The value bytes, without the code and length header.
    pub data: Vec<u8>,
}

/// DDNS option: 16-bit flags (C=1, A=2, D=4, P=8) and the FQDN in DNS wire encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ddns {
    /// Flag bits C=1, A=2, D=4, P=8 as the sender set them.
    pub flags: u16,
    /// The FQDN in DNS wire encoding (length-prefixed labels), possibly empty.
    pub name: Vec<u8>,
}

/// One binding transaction of a BNDUPD, or one address status of a BNDACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingTxn {
    /// assigned-IP-address: the address this transaction is about (always first on the wire).
    pub addr: Ipv4Addr,
    /// Raw binding-status (1..=7 known); None when absent.
    pub status: Option<u8>,
    /// client-identifier: the client's DHCP option 61 value.
    pub client_id: Option<Vec<u8>>,
    /// client-hardware-address: hardware type byte then the address.
    pub chaddr: Option<(u8, Vec<u8>)>,
    /// lease-expiration-time, Unix seconds: when the client's lease ends.
    pub lease_expiry: Option<u32>,
    /// potential-expiration-time, Unix seconds: how far the sender may extend the lease once
    /// the receiver acknowledges it (the MCLT rule, draft-12 5.2.1).
    pub potential_expiry: Option<u32>,
    /// start-time-of-state, Unix seconds: when the binding entered `status`.
    pub start_time: Option<u32>,
    /// client last transaction time, Unix seconds.
    pub cltt: Option<u32>,
    /// IP-flags bits ([`IP_FLAG_RESERVED`](crate::types::IP_FLAG_RESERVED),
    /// [`IP_FLAG_BOOTP`](crate::types::IP_FLAG_BOOTP)).
    pub ip_flags: Option<u16>,
    /// DDNS option: who updates which DNS records for this client.
    pub ddns: Option<Ddns>,
    /// client-request-options value (magic cookie + DHCP options).
    pub request_options: Option<Vec<u8>>,
    /// client-reply-options value (magic cookie + DHCP options).
    pub reply_options: Option<Vec<u8>>,
    /// BNDACK only: present = rejected.
    pub reject_reason: Option<u8>,
    /// message option: free text explaining a reject.
    pub message: Option<Vec<u8>>,
    /// Options after this transaction's address that are not binding options, kept verbatim.
    pub unknown: Vec<RawOption>,
}

impl BindingTxn {
    /// A transaction for `addr` with every option absent.
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
    /// relationship-name; the secondary refuses a CONNECT whose name is not its own.
    pub relationship_name: Option<Vec<u8>>,
    /// max-unacked-BNDUPD: how many BNDUPDs the sender accepts before it acknowledges them.
    pub max_unacked: Option<u32>,
    /// receive-timer, seconds: the sender drops the connection after this long without a
    /// message, so the receiver sends CONTACT well within it.
    pub receive_timer: Option<u32>,
    /// vendor-class: the sender's implementation name (ours starts with
    /// [`XDHCPD_VENDOR_PREFIX`](crate::engine::XDHCPD_VENDOR_PREFIX)).
    pub vendor_class: Option<Vec<u8>>,
    /// protocol-version; must be [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    pub protocol_version: Option<u8>,
    /// TLS-request (CONNECT); 2 (TLS required) is refused, we do not speak TLS.
    pub tls_request: Option<u8>,
    /// TLS-reply (CONNECTACK); we answer 0 (no TLS) when the CONNECT carried a TLS-request.
    pub tls_reply: Option<u8>,
    /// Maximum client lead time, seconds (CONNECT, from the primary; must be > 0).
    pub mclt: Option<u32>,
    /// 32 bytes, RFC 3074 bitmap (bit i of byte i/8, least significant first).
    pub hba: Option<Vec<u8>>,
    /// delayed-service parameter; decoded, never sent, not acted on.
    pub delayed_service: Option<u8>,
    /// CONNECTACK only: present = the CONNECT was refused for this reason.
    pub reject_reason: Option<u8>,
    /// message option: free text explaining a refusal.
    pub message: Option<Vec<u8>>,
}

/// Message body by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// POOLREQ: the secondary asks for addresses to own (BACKUP status).
    PoolReq,
    /// POOLRESP: answer to POOLREQ.
    PoolResp {
        /// How many addresses the primary moved to the secondary (required option).
        addresses_transferred: u32,
    },
    /// BNDUPD: binding transactions for the receiver to record, each starting with its address.
    BndUpd(Vec<BindingTxn>),
    /// BNDACK: one entry per acknowledged address; `reject_reason` set = refused.
    BndAck(Vec<BindingTxn>),
    /// CONNECT, primary to secondary, first message on a connection.
    Connect(ConnectInfo),
    /// CONNECTACK, secondary to primary; `reject_reason` set = refused.
    ConnectAck(ConnectInfo),
    /// UPDREQALL: send every binding.
    UpdReqAll,
    /// UPDDONE: every update asked for has been sent and acknowledged.
    UpdDone,
    /// UPDREQ: send the bindings not yet acknowledged.
    UpdReq,
    /// STATE: the sender's failover state.
    State {
        /// server-state, a [`ServerState`](crate::ServerState) wire value (required option).
        state: u8,
        /// server-flags ([`SERVER_FLAG_STARTUP`](super::SERVER_FLAG_STARTUP)); 0 when absent.
        flags: u8,
        /// start-time-of-state, Unix seconds: when the sender entered `state`; 0 when absent.
        start_time: u32,
    },
    /// CONTACT: keep-alive, no options.
    Contact,
    /// DISCONNECT: the sender is closing the connection.
    Disconnect {
        /// Why; 254 (unknown) when the option is absent.
        reject_reason: u8,
        /// Free text the sender gave, if any.
        message: Option<Vec<u8>>,
    },
    /// A type in 128..=255 this implementation does not know: the draft says ignore it.
    Optional {
        /// The message type byte as received.
        msg_type: u8,
    },
}

impl Body {
    /// The message type byte this body is sent with (see [`msg`](super::msg)).
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

    /// The draft's name of the message type, for logs and errors (`"optional"` for an
    /// unknown optional type).
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
    /// Header `time`: the sender's clock when it sent the message, Unix seconds (CONNECT and
    /// CONNECTACK are refused when it is too far from ours).
    pub time: u32,
    /// Header transaction id; a BNDACK, CONNECTACK or POOLRESP carries the xid of the message
    /// it answers.
    pub xid: u32,
    /// Type and options.
    pub body: Body,
    /// Message-level options we did not interpret (skipped, kept for inspection).
    pub unknown: Vec<RawOption>,
}

impl Message {
    /// A message with no unknown options.
    pub fn new(time: u32, xid: u32, body: Body) -> Self {
        Message {
            time,
            xid,
            body,
            unknown: Vec::new(),
        }
    }
}
