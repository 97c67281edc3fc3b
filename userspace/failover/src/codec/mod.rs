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
//!
//! Layout: wire constants here; `message` (the decoded forms), `encode`, `decode` (one whole
//! message), `decoder` (the streaming decoder over a TCP byte stream), `relay_info` (option 82
//! inside client-request-options).

mod decode;
mod decoder;
mod encode;
mod message;
mod relay_info;

pub use decode::{decode_message, DecodeError};
pub use decoder::Decoder;
pub use encode::{encode_txn, EncodeError};
pub use message::{BindingTxn, Body, ConnectInfo, Ddns, Message, RawOption};
pub use relay_info::{
    relay_info_from_request_options, request_options_with_relay_info, DHCP_MAGIC,
    DHCP_OPTION_RELAY_AGENT_INFO,
};

/// Header length written by us (and by ISC).
pub const HEADER_LEN: usize = 12;
pub const MIN_MESSAGE_LEN: usize = 12;
pub const MAX_MESSAGE_LEN: usize = 2048;
pub const PROTOCOL_VERSION: u8 = 1;
/// Server-flags bit 0.
pub const SERVER_FLAG_STARTUP: u8 = 0x01;

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
