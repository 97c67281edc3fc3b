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
//! inside client-request-options), `xdhcpd_opts` (xdhcpd's own binding flags in
//! vendor-options, to an xdhcpd partner only).

mod decode;
mod decoder;
mod encode;
mod message;
mod relay_info;
pub mod xdhcpd_opts;

pub use decode::{decode_message, DecodeError};
pub use decoder::Decoder;
pub use encode::{encode_txn, EncodeError};
pub use message::{BindingTxn, Body, ConnectInfo, Ddns, Message, RawOption};
pub use relay_info::{
    client_data_from_request_options, relay_info_from_request_options,
    request_options_with_client_data, request_options_with_relay_info, DHCP_MAGIC,
    DHCP_OPTION_RELAY_AGENT_INFO,
};

/// Header length written by us (and by ISC).
pub const HEADER_LEN: usize = 12;
/// Smallest legal message: a bare header with no options.
pub const MIN_MESSAGE_LEN: usize = 12;
/// Largest legal message, header included (draft-12 6.1); the decoder refuses longer ones and
/// the encoder will not build one.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// The protocol-version option value we send and require in CONNECT/CONNECTACK.
pub const PROTOCOL_VERSION: u8 = 1;
/// Server-flags bit 0.
pub const SERVER_FLAG_STARTUP: u8 = 0x01;

/// Message type codes (draft-12 6.1).
pub mod msg {
    /// Pool request: the secondary asks the primary to send it addresses to own.
    pub const POOLREQ: u8 = 1;
    /// Pool response: how many addresses the primary moved to the secondary.
    pub const POOLRESP: u8 = 2;
    /// Binding update: one or more binding transactions for the partner to record.
    pub const BNDUPD: u8 = 3;
    /// Binding acknowledgement: the receiver's verdict on each transaction of a BNDUPD.
    pub const BNDACK: u8 = 4;
    /// Connect: the primary opens the relationship on a new TCP connection.
    pub const CONNECT: u8 = 5;
    /// Connect acknowledgement: the secondary accepts (or, with reject-reason, refuses) it.
    pub const CONNECTACK: u8 = 6;
    /// Update request all: send every binding you have.
    pub const UPDREQALL: u8 = 7;
    /// Update done: all updates asked for by UPDREQ/UPDREQALL have been sent and acked.
    pub const UPDDONE: u8 = 8;
    /// Update request: send the bindings I have not yet acknowledged.
    pub const UPDREQ: u8 = 9;
    /// State: the sender's failover state, server flags and start time of that state.
    pub const STATE: u8 = 10;
    /// Contact: the keep-alive sent when nothing else was sent for a while.
    pub const CONTACT: u8 = 11;
    /// Disconnect: the sender is closing the connection, with a reject-reason.
    pub const DISCONNECT: u8 = 12;
}

/// Option codes (draft-12 section 12).
pub mod opt {
    /// u32 in POOLRESP: how many addresses the primary gave the secondary.
    pub const ADDRESSES_TRANSFERRED: u16 = 1;
    /// IPv4 address; starts each binding transaction of a BNDUPD/BNDACK.
    pub const ASSIGNED_IP_ADDRESS: u16 = 2;
    /// u8 [`BindingStatus`](crate::BindingStatus) of the address.
    pub const BINDING_STATUS: u16 = 3;
    /// The client's DHCP option 61 value, as received.
    pub const CLIENT_IDENTIFIER: u16 = 4;
    /// Hardware type byte followed by the client's hardware address.
    pub const CLIENT_HARDWARE_ADDRESS: u16 = 5;
    /// u32 client last transaction time: when the client last talked to a server.
    pub const CLTT: u16 = 6;
    /// The DHCP options the server sent the client (magic cookie + options).
    pub const REPLY_OPTIONS: u16 = 7;
    /// DHCP options from the client's request (magic cookie + options; carries option 82).
    pub const REQUEST_OPTIONS: u16 = 8;
    /// u16 flags then the client FQDN in DNS wire form (who updated which DNS records).
    pub const DDNS: u16 = 9;
    /// u8 delayed-service parameter in CONNECT/CONNECTACK; decoded, never sent, not acted on.
    pub const DELAYED_SERVICE: u16 = 10;
    /// 256-bit RFC 3074 bitmap the primary sends in CONNECT; bit set = a bucket the primary
    /// serves (ISC convention, see [`crate::policy`]).
    pub const HASH_BUCKET_ASSIGNMENT: u16 = 11;
    /// u16 per-address flags (reserved address, BOOTP client).
    pub const IP_FLAGS: u16 = 12;
    /// u32 Unix time the lease given to the client ends.
    pub const LEASE_EXPIRATION_TIME: u16 = 13;
    /// u32 in CONNECT/CONNECTACK: how many BNDUPDs the sender accepts unacknowledged.
    pub const MAX_UNACKED_BNDUPD: u16 = 14;
    /// u32 seconds, maximum client lead time; sent by the primary in CONNECT.
    pub const MCLT: u16 = 15;
    /// Free text explaining a reject or disconnect.
    pub const MESSAGE: u16 = 16;
    /// HMAC-MD5 digest; not supported, skipped when decoding (as ISC does).
    pub const MESSAGE_DIGEST: u16 = 17;
    /// u32 Unix time: the lease end the sender may extend a lease to, once acked.
    pub const POTENTIAL_EXPIRATION_TIME: u16 = 18;
    /// u32 seconds: the sender closes the connection after this long without a message.
    pub const RECEIVE_TIMER: u16 = 19;
    /// u8 protocol version, [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) (1).
    pub const PROTOCOL_VERSION: u16 = 20;
    /// u8 [`RejectReason`](crate::RejectReason): why a CONNECT or a binding update was refused.
    pub const REJECT_REASON: u16 = 21;
    /// Name of the failover relationship; both partners must configure the same one.
    pub const RELATIONSHIP_NAME: u16 = 22;
    /// u8 flags in STATE; bit 0 is [`SERVER_FLAG_STARTUP`](super::SERVER_FLAG_STARTUP).
    pub const SERVER_FLAGS: u16 = 23;
    /// u8 [`ServerState`](crate::ServerState) in STATE.
    pub const SERVER_STATE: u16 = 24;
    /// u32 Unix time the sender entered its state (STATE) or the binding its status (BNDUPD).
    pub const START_TIME_OF_STATE: u16 = 25;
    /// u8 in CONNECTACK: the TLS answer (we always answer 0, no TLS).
    pub const TLS_REPLY: u16 = 26;
    /// u8 in CONNECT: whether the primary asks for TLS (2 = required, which we refuse).
    pub const TLS_REQUEST: u16 = 27;
    /// Implementation name of the sender (ISC dhcpd, xdhcpd...), free text.
    pub const VENDOR_CLASS: u16 = 28;
    /// Vendor-specific options; kept as unknown.
    pub const VENDOR_OPTIONS: u16 = 29;
}
