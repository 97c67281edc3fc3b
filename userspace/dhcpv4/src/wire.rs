//! DHCPv4 message format (RFC 2131 §2, RFC 2132): a zero-copy view for parsing
//! and a writer that builds a reply straight into a frame buffer.
//!
//! Why not `dhcproto` on the packet path: its `Message` decodes every option
//! into an owned map (several heap allocations per packet) and its encoder
//! writes into a `Vec`. The engine needs a handful of options and a reply
//! written in place; `benches/benches/wire.rs` measures both (see
//! `benches/RESULTS.md`). dhcproto is still used in tests as an independent
//! decoder of what we build.
//!
//! Invariant: nothing here panics on any input; every accessor is bounds-checked
//! once in [`Message::new_checked`] or returns `None`/`Err`.

use std::net::Ipv4Addr;

/// Fixed BOOTP header length up to and including `file`.
pub const HEADER_LEN: usize = 236;
/// Header plus the magic cookie: where options start.
pub const OPTIONS_OFFSET: usize = 240;
/// The four bytes at offset 236 that mark the start of DHCP options (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Minimum size of a BOOTP message on the wire (RFC 951); replies are padded to it.
pub const MIN_BOOTP_LEN: usize = 300;

/// `op` of a message from a client or relay agent to a server.
pub const OP_BOOTREQUEST: u8 = 1;
/// `op` of a message from a server.
pub const OP_BOOTREPLY: u8 = 2;
/// The B bit of `flags` (RFC 2131 §2): the client cannot receive unicast before it has an
/// address, so the reply is broadcast.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes the server interprets or owns.
pub mod opt {
    /// One byte of padding, no length byte.
    pub const PAD: u8 = 0;
    /// Subnet mask of the client's subnet (RFC 2132 §3.3).
    pub const SUBNET_MASK: u8 = 1;
    /// Routers on the client's subnet, in order of preference (RFC 2132 §3.5).
    pub const ROUTER: u8 = 3;
    /// The client's host name (RFC 2132 §3.14).
    pub const HOST_NAME: u8 = 12;
    /// Broadcast address of the client's subnet (RFC 2132 §5.3).
    pub const BROADCAST: u8 = 28;
    /// The address a client asks for (DISCOVER, SELECTING and INIT-REBOOT REQUEST) or
    /// declines (DECLINE).
    pub const REQUESTED_IP: u8 = 50;
    /// Lease time in seconds (u32): asked for by the client, granted by the server.
    pub const LEASE_TIME: u8 = 51;
    /// Options continue in `file` (1), `sname` (2) or both (3) (RFC 2132 §9.3).
    pub const OVERLOAD: u8 = 52;
    /// The DHCP message type ([`MessageType`](super::MessageType)); one byte.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier: the address of the server the message is to or from.
    pub const SERVER_ID: u8 = 54;
    /// The option codes the client asks for, one byte each.
    pub const PARAMETER_LIST: u8 = 55;
    /// A text message (NAK reasons).
    pub const MESSAGE: u8 = 56;
    /// Largest DHCP message in bytes the client accepts (u16; RFC 2132 §9.10).
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// T1: seconds until the client starts renewing with its server (u32).
    pub const RENEWAL_TIME: u8 = 58;
    /// T2: seconds until the client starts rebinding with any server (u32).
    pub const REBINDING_TIME: u8 = 59;
    /// Vendor class identifier (RFC 2132 §9.13).
    pub const VENDOR_CLASS: u8 = 60;
    /// Client identifier: a type byte and the identifier (RFC 2132 §9.14); keys the lease
    /// when present, else the hardware address does.
    pub const CLIENT_ID: u8 = 61;
    /// User class (RFC 3004): the client's class name(s), matched whole by `[[class]]`.
    pub const USER_CLASS: u8 = 77;
    /// Rapid commit (RFC 4039): the client takes an ACK in answer to its DISCOVER.
    pub const RAPID_COMMIT: u8 = 80;
    /// Relay agent information (RFC 3046): sub-options added by the relay, echoed in replies.
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// RFC 3118 authentication (RFC 6704: the reconfigure key / FORCERENEW digest).
    pub const AUTHENTICATION: u8 = 90;
    /// RFC 4388: seconds since the client's last transaction (leasequery replies).
    pub const CLIENT_LAST_TRANSACTION_TIME: u8 = 91;
    /// RFC 4388: further addresses bound to the queried client (leasequery replies).
    pub const ASSOCIATED_IP: u8 = 92;
    /// RFC 6926: status of a bulk leasequery (code byte, then a UTF-8 message).
    pub const STATUS_CODE: u8 = 151;
    /// RFC 6926: the server's current time, Unix seconds (u32).
    pub const BASE_TIME: u8 = 152;
    /// RFC 6926: seconds before base-time when the binding entered its current state (u32).
    pub const START_TIME_OF_STATE: u8 = 153;
    /// RFC 6926: report only bindings whose state changed at or after this time (u32).
    pub const QUERY_START_TIME: u8 = 154;
    /// RFC 6926: report only bindings whose state changed at or before this time (u32).
    pub const QUERY_END_TIME: u8 = 155;
    /// RFC 6926: the binding's state (one byte; see `bulk_leasequery::DhcpState`).
    pub const DHCP_STATE: u8 = 156;
    /// RFC 3011: the subnet the client wants an address on.
    pub const SUBNET_SELECTION: u8 = 118;
    /// RFC 6704 FORCERENEW nonce capable: the algorithms the client supports (1: HMAC-MD5).
    pub const FORCERENEW_NONCE: u8 = 145;
    /// End of the options; no length byte.
    pub const END: u8 = 255;
}

/// Relay agent information sub-options (RFC 3046, RFC 3527).
pub mod relay_sub {
    /// Agent circuit ID: the relay's name for the circuit the request came in on.
    pub const CIRCUIT_ID: u8 = 1;
    /// Agent remote ID: the relay's name for the remote end of that circuit.
    pub const REMOTE_ID: u8 = 2;
    /// RFC 3527 link selection: the subnet to allocate on, when giaddr cannot say it.
    pub const LINK_SELECTION: u8 = 5;
    /// RFC 3993 subscriber id.
    pub const SUBSCRIBER_ID: u8 = 6;
    /// RFC 6925 relay-id: the relay agent's own identity (bulk leasequery by relay-id).
    pub const RELAY_ID: u8 = 12;
}

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// A client looks for servers and an address.
    Discover = 1,
    /// A server offers an address in answer to a DISCOVER.
    Offer = 2,
    /// A client asks for an offered address, confirms one after a reboot, renews or rebinds.
    Request = 3,
    /// A client found the address it was given already in use.
    Decline = 4,
    /// A server grants (or confirms) a lease.
    Ack = 5,
    /// A server refuses a REQUEST: the client must start over.
    Nak = 6,
    /// A client gives its address back.
    Release = 7,
    /// A client that has an address asks only for configuration.
    Inform = 8,
    /// RFC 3203: a server tells a client to renew now.
    ForceRenew = 9,
    /// RFC 4388: a relay or access concentrator asks who holds an address or client.
    LeaseQuery = 10,
    /// RFC 4388: the address is one this server manages, with no active lease.
    LeaseUnassigned = 11,
    /// RFC 4388: the server knows nothing about the address or client.
    LeaseUnknown = 12,
    /// RFC 4388: the address is bound; the reply describes the lease.
    LeaseActive = 13,
    /// RFC 6926: a bulk leasequery over TCP (by MAC, client id, relay-id, remote-id or all).
    BulkLeaseQuery = 14,
    /// RFC 6926: the last message of a bulk leasequery's answer (with a status on error).
    LeaseQueryDone = 15,
    /// RFC 7724: subscribe to binding changes as they happen (over TCP).
    ActiveLeaseQuery = 16,
    /// RFC 7724: a status during an active leasequery (catch-up complete, data missing).
    LeaseQueryStatus = 17,
    /// RFC 7724: start TLS on the connection (requestor) / its answer (server).
    Tls = 18,
}

impl MessageType {
    /// The type for an option 53 value; `None` for values no RFC above assigns.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            9 => Self::ForceRenew,
            10 => Self::LeaseQuery,
            11 => Self::LeaseUnassigned,
            12 => Self::LeaseUnknown,
            13 => Self::LeaseActive,
            14 => Self::BulkLeaseQuery,
            15 => Self::LeaseQueryDone,
            16 => Self::ActiveLeaseQuery,
            17 => Self::LeaseQueryStatus,
            18 => Self::Tls,
            _ => return None,
        })
    }
}

/// Why a message could not be parsed. `offset` is the byte offset in the
/// DHCP payload where the problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The payload (its length in bytes) ends before the options start.
    #[error("message too short: {0} bytes, at least 240 needed")]
    TooShort(usize),
    /// The four bytes at offset 236 are not [`MAGIC_COOKIE`].
    #[error("bad magic cookie at offset 236")]
    BadCookie,
    /// `op` (the value) is not [`OP_BOOTREQUEST`].
    #[error("not a BOOTREQUEST (op {0}) at offset 0")]
    NotRequest(u8),
    /// `hlen` (the value) is larger than the 16-byte chaddr field.
    #[error("hardware address length {0} exceeds 16 at offset 2")]
    BadHlen(u8),
    /// An option's length byte, or its value, lies past the end of its region.
    #[error("option {code} at offset {offset} runs past the end of the message")]
    OptionOverrun {
        /// The option code.
        code: u8,
        /// Offset of the option's code byte in the payload.
        offset: usize,
    },
    /// An option's length is wrong for its code (e.g. an address that is not 4 bytes), or
    /// option 52's value is not 1-3, or a sub-option of option 82 is malformed.
    #[error("option {code} at offset {offset} has invalid length {len}")]
    OptionLength {
        /// The option code.
        code: u8,
        /// Offset of the option's code byte in the payload.
        offset: usize,
        /// The length byte as found.
        len: u8,
    },
    /// A request without option 53.
    #[error("no message type option (53)")]
    NoMessageType,
    /// Option 53 holds a value (here) [`MessageType::from_u8`] does not know.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
}

/// A validated view over a DHCPv4 message.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the fixed header and the cookie. Options are checked by [`Message::options`].
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < OPTIONS_OFFSET {
            return Err(ParseError::TooShort(buf.len()));
        }
        if buf[236..240] != MAGIC_COOKIE {
            return Err(ParseError::BadCookie);
        }
        if buf[2] > 16 {
            return Err(ParseError::BadHlen(buf[2]));
        }
        Ok(Message { buf })
    }

    /// The whole payload the view was made from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// `op`: [`OP_BOOTREQUEST`] or [`OP_BOOTREPLY`] (not checked here).
    pub fn op(&self) -> u8 {
        self.buf[0]
    }
    /// Hardware address type (1 = Ethernet).
    pub fn htype(&self) -> u8 {
        self.buf[1]
    }
    /// Hardware address length in bytes; at most 16 (checked by [`Message::new_checked`]).
    pub fn hlen(&self) -> u8 {
        self.buf[2]
    }
    /// Relay agents the message has passed.
    pub fn hops(&self) -> u8 {
        self.buf[3]
    }
    /// Transaction ID chosen by the client; replies carry it back.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }
    /// Seconds since the client began acquiring or renewing its address.
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes([self.buf[8], self.buf[9]])
    }
    /// The `flags` field; only [`FLAG_BROADCAST`] is defined.
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[10], self.buf[11]])
    }
    /// Whether the client set the broadcast bit.
    pub fn broadcast_flag(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }
    fn ip_at(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        )
    }
    /// Client address: set by a client that has one and can answer ARP (RENEW, REBIND,
    /// INFORM, RELEASE), or the address a leasequery asks about; else 0.0.0.0.
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.ip_at(12)
    }
    /// "Your" address: the address a server gives; 0.0.0.0 in requests.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.ip_at(16)
    }
    /// Next server (boot server) address.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.ip_at(20)
    }
    /// Relay agent address: set by the first relay, 0.0.0.0 when the client is on a
    /// link of ours.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.ip_at(24)
    }
    /// The whole 16-byte chaddr field.
    pub fn chaddr_field(&self) -> &'a [u8; 16] {
        // In bounds: checked length >= 240.
        self.buf[28..44].try_into().unwrap_or(&[0; 16])
    }
    /// The hardware address (first `hlen` bytes of chaddr).
    pub fn chaddr(&self) -> &'a [u8] {
        &self.buf[28..28 + self.hlen() as usize]
    }
    /// The 64-byte server host name field (may hold options under option 52).
    pub fn sname(&self) -> &'a [u8] {
        &self.buf[44..108]
    }
    /// The 128-byte boot file name field (may hold options under option 52).
    pub fn file(&self) -> &'a [u8] {
        &self.buf[108..236]
    }

    /// Iterates the options area; with option 52 (overload) also `file` then `sname`.
    pub fn options(&self) -> OptionIter<'a> {
        OptionIter::new(self.buf)
    }

    /// One pass over the options, collecting what the server needs.
    pub fn summary(&self) -> Result<Summary<'a>, ParseError> {
        let mut s = Summary::default();
        for item in self.options() {
            let (code, val, offset) = item?;
            let bad_len = |len: usize| ParseError::OptionLength {
                code,
                offset,
                len: len as u8,
            };
            match code {
                opt::MESSAGE_TYPE => {
                    if val.len() != 1 {
                        return Err(bad_len(val.len()));
                    }
                    s.message_type = Some(
                        MessageType::from_u8(val[0])
                            .ok_or(ParseError::UnknownMessageType(val[0]))?,
                    );
                }
                opt::REQUESTED_IP => s.requested_ip = Some(ipv4(val).ok_or(bad_len(val.len()))?),
                opt::SERVER_ID => s.server_id = Some(ipv4(val).ok_or(bad_len(val.len()))?),
                opt::LEASE_TIME => s.lease_time = Some(be_u32(val).ok_or(bad_len(val.len()))?),
                opt::CLIENT_ID => {
                    if val.is_empty() {
                        return Err(bad_len(0));
                    }
                    s.client_id = Some(val)
                }
                opt::PARAMETER_LIST => s.parameter_list = Some(val),
                opt::MAX_MESSAGE_SIZE => {
                    s.max_message_size = Some(be_u16(val).ok_or(bad_len(val.len()))?)
                }
                opt::HOST_NAME => s.host_name = Some(val),
                opt::VENDOR_CLASS => s.vendor_class = Some(val),
                opt::USER_CLASS => s.user_class = Some(val),
                opt::RAPID_COMMIT => s.rapid_commit = true,
                opt::RELAY_AGENT_INFO => {
                    s.relay_agent_info = Some(val);
                    // Link selection (RFC 3527) lives inside option 82.
                    for sub in SubOptionIter::new(val) {
                        let (sc, sv) = sub.map_err(|_| bad_len(val.len()))?;
                        if sc == relay_sub::LINK_SELECTION {
                            s.link_selection = Some(ipv4(sv).ok_or(bad_len(val.len()))?);
                        }
                    }
                }
                opt::FORCERENEW_NONCE => s.forcerenew_nonce = Some(val),
                opt::SUBNET_SELECTION => {
                    s.subnet_selection = Some(ipv4(val).ok_or(bad_len(val.len()))?)
                }
                _ => {}
            }
        }
        Ok(s)
    }
}

/// The options the server acts on, borrowed from the message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary<'a> {
    /// Option 53.
    pub message_type: Option<MessageType>,
    /// Option 50: the address the client asks for.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server a SELECTING REQUEST, a DECLINE or a RELEASE is meant for.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51: the lease time the client asks for, in seconds.
    pub lease_time: Option<u32>,
    /// Option 61, type byte included; never empty.
    pub client_id: Option<&'a [u8]>,
    /// Option 55: the option codes the client asks for.
    pub parameter_list: Option<&'a [u8]>,
    /// Option 57: the largest DHCP message in bytes the client accepts.
    pub max_message_size: Option<u16>,
    /// Option 12, as sent (not checked to be text).
    pub host_name: Option<&'a [u8]>,
    /// Option 60, as sent.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77, as sent.
    pub user_class: Option<&'a [u8]>,
    /// Option 80 present: the client accepts an ACK to its DISCOVER (RFC 4039).
    pub rapid_commit: bool,
    /// The whole value of option 82, echoed unchanged in replies (RFC 3046 §2.2).
    pub relay_agent_info: Option<&'a [u8]>,
    /// RFC 3527 link selection sub-option of option 82.
    pub link_selection: Option<Ipv4Addr>,
    /// RFC 3011 subnet selection option.
    pub subnet_selection: Option<Ipv4Addr>,
    /// RFC 6704 option 145: the FORCERENEW nonce algorithms the client supports.
    pub forcerenew_nonce: Option<&'a [u8]>,
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
}
fn be_u32(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}
fn be_u16(v: &[u8]) -> Option<u16> {
    <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes)
}

/// Iterator over `(code, value, offset)`; stops at END; yields an error once
/// on a malformed option and then ends.
pub struct OptionIter<'a> {
    buf: &'a [u8],
    /// Current region: (start, end) in `buf`.
    pos: usize,
    end: usize,
    /// Overload value once seen (1 = file, 2 = sname, 3 = both).
    overload: u8,
    /// 0 = options area, 1 = file, 2 = sname, 3 = done.
    region: u8,
}

impl<'a> OptionIter<'a> {
    fn new(buf: &'a [u8]) -> Self {
        OptionIter {
            buf,
            pos: OPTIONS_OFFSET,
            end: buf.len(),
            overload: 0,
            region: 0,
        }
    }

    /// Moves to the next overloaded region; false when there is none.
    fn next_region(&mut self) -> bool {
        loop {
            self.region += 1;
            match self.region {
                1 if self.overload & 1 != 0 => {
                    (self.pos, self.end) = (108, 236);
                    return true;
                }
                2 if self.overload & 2 != 0 => {
                    (self.pos, self.end) = (44, 108);
                    return true;
                }
                1 | 2 => continue,
                _ => {
                    self.region = 3;
                    return false;
                }
            }
        }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<(u8, &'a [u8], usize), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.region >= 3 {
                return None;
            }
            if self.pos >= self.end {
                // Options area may end without END; that is tolerated.
                if !self.next_region() {
                    return None;
                }
                continue;
            }
            let offset = self.pos;
            let code = self.buf[offset];
            match code {
                opt::PAD => {
                    self.pos += 1;
                    continue;
                }
                opt::END => {
                    if !self.next_region() {
                        return None;
                    }
                    continue;
                }
                _ => {}
            }
            let Some(&len) = self.buf.get(offset + 1).filter(|_| offset + 1 < self.end) else {
                self.region = 3;
                return Some(Err(ParseError::OptionOverrun { code, offset }));
            };
            let start = offset + 2;
            let stop = start + len as usize;
            if stop > self.end {
                self.region = 3;
                return Some(Err(ParseError::OptionOverrun { code, offset }));
            }
            self.pos = stop;
            let val = &self.buf[start..stop];
            if code == opt::OVERLOAD && self.region == 0 {
                if len != 1 || val[0] == 0 || val[0] > 3 {
                    self.region = 3;
                    return Some(Err(ParseError::OptionLength { code, offset, len }));
                }
                self.overload = val[0];
            }
            return Some(Ok((code, val, offset)));
        }
    }
}

/// Iterator over relay agent sub-options (same TLV shape, no PAD/END).
pub struct SubOptionIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SubOptionIter<'a> {
    /// Iterates the sub-options in `buf` (the value of option 82). Yields `(code, value)`;
    /// a sub-option that runs past the end yields `Err(its offset in buf)` and ends it.
    pub fn new(buf: &'a [u8]) -> Self {
        SubOptionIter { buf, pos: 0 }
    }
}

impl<'a> Iterator for SubOptionIter<'a> {
    type Item = Result<(u8, &'a [u8]), usize>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        let code = self.buf[at];
        let Some(&len) = self.buf.get(at + 1) else {
            self.pos = self.buf.len();
            return Some(Err(at));
        };
        let stop = at + 2 + len as usize;
        if stop > self.buf.len() {
            self.pos = self.buf.len();
            return Some(Err(at));
        }
        self.pos = stop;
        Some(Ok((code, &self.buf[at + 2..stop])))
    }
}

/// The reply did not fit into the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reply does not fit in {0} bytes")]
pub struct NoRoom(pub usize);

/// Writes a BOOTREPLY into a caller-provided buffer. Options are appended in
/// call order; [`ReplyWriter::finish`] adds END and pads to 300 bytes.
pub struct ReplyWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// Stop adding optional options beyond this (client's max message size).
    limit: usize,
}

impl<'b> ReplyWriter<'b> {
    /// Starts a reply to `req`: copies xid, flags, giaddr, htype/hlen/chaddr,
    /// zeroes the rest of the header. `limit` is the most bytes the DHCP
    /// payload may take (the client's option 57, else 576 - 28 header bytes).
    pub fn new(buf: &'b mut [u8], req: &Message<'_>, limit: usize) -> Result<Self, NoRoom> {
        if buf.len() < MIN_BOOTP_LEN {
            return Err(NoRoom(buf.len()));
        }
        let r = req.as_bytes();
        buf[..OPTIONS_OFFSET].fill(0);
        buf[0] = OP_BOOTREPLY;
        buf[1] = r[1]; // htype
        buf[2] = r[2]; // hlen
        buf[3] = 0; // hops
        buf[4..8].copy_from_slice(&r[4..8]); // xid
        buf[10..12].copy_from_slice(&r[10..12]); // flags
        buf[24..28].copy_from_slice(&r[24..28]); // giaddr
        buf[28..44].copy_from_slice(&r[28..44]); // chaddr
        buf[236..240].copy_from_slice(&MAGIC_COOKIE);
        let limit = limit.clamp(MIN_BOOTP_LEN, buf.len());
        Ok(ReplyWriter {
            buf,
            len: OPTIONS_OFFSET,
            limit,
        })
    }

    /// Sets `ciaddr` (0.0.0.0 unless set).
    pub fn set_ciaddr(&mut self, a: Ipv4Addr) {
        self.buf[12..16].copy_from_slice(&a.octets());
    }
    /// Sets `yiaddr`, the address given to the client (0.0.0.0 unless set).
    pub fn set_yiaddr(&mut self, a: Ipv4Addr) {
        self.buf[16..20].copy_from_slice(&a.octets());
    }
    /// Sets `siaddr`, the next (boot) server (0.0.0.0 unless set).
    pub fn set_siaddr(&mut self, a: Ipv4Addr) {
        self.buf[20..24].copy_from_slice(&a.octets());
    }
    /// Sets htype, hlen and the whole chaddr field (leasequery answers name
    /// the bound client, not the requester). `hlen` is clamped to 16.
    pub fn set_chaddr(&mut self, htype: u8, hlen: u8, chaddr: &[u8; 16]) {
        self.buf[1] = htype;
        self.buf[2] = hlen.min(16);
        self.buf[28..44].copy_from_slice(chaddr);
    }
    /// Overwrites the `flags` copied from the request.
    pub fn set_flags(&mut self, f: u16) {
        self.buf[10..12].copy_from_slice(&f.to_be_bytes());
    }
    /// Sets the `file` field (truncated to 127 bytes, NUL-terminated).
    pub fn set_file(&mut self, name: &[u8]) {
        let n = name.len().min(127);
        self.buf[108..108 + n].copy_from_slice(&name[..n]);
    }

    /// Room left for options, keeping one byte for END.
    fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.len + 1)
    }

    /// Appends an option that must be present (fails if no room even in the buffer).
    pub fn option(&mut self, code: u8, val: &[u8]) -> Result<(), NoRoom> {
        self.put(code, val, self.buf.len())
    }

    /// Appends an option only if it fits within the client's size limit;
    /// returns whether it was written.
    pub fn option_if_room(&mut self, code: u8, val: &[u8]) -> bool {
        self.put(code, val, self.limit).is_ok()
    }

    fn put(&mut self, code: u8, val: &[u8], limit: usize) -> Result<(), NoRoom> {
        // Values over 255 bytes are split into several options (RFC 3396).
        let chunks = val.len().div_ceil(255).max(1);
        if self.room(limit) < val.len() + 2 * chunks {
            return Err(NoRoom(limit));
        }
        if val.is_empty() {
            self.buf[self.len] = code;
            self.buf[self.len + 1] = 0;
            self.len += 2;
            return Ok(());
        }
        for chunk in val.chunks(255) {
            self.buf[self.len] = code;
            self.buf[self.len + 1] = chunk.len() as u8;
            self.buf[self.len + 2..self.len + 2 + chunk.len()].copy_from_slice(chunk);
            self.len += 2 + chunk.len();
        }
        Ok(())
    }

    /// [`ReplyWriter::option`] with a 4-byte big-endian value (lease time, T1, T2: seconds).
    pub fn option_u32(&mut self, code: u8, v: u32) -> Result<(), NoRoom> {
        self.option(code, &v.to_be_bytes())
    }
    /// [`ReplyWriter::option`] with one IPv4 address.
    pub fn option_ip(&mut self, code: u8, v: Ipv4Addr) -> Result<(), NoRoom> {
        self.option(code, &v.octets())
    }

    /// Ends a BOOTREPLY to a request that carried no magic cookie (RFC 951): the 64-byte
    /// vendor area is all zero (no cookie, no options), 300 bytes in all. Options written
    /// before are dropped.
    pub fn finish_plain(self) -> usize {
        self.buf[HEADER_LEN..MIN_BOOTP_LEN].fill(0);
        MIN_BOOTP_LEN
    }

    /// Writes END, pads to 300 bytes, returns the message length.
    pub fn finish(self) -> usize {
        let mut len = self.len;
        self.buf[len] = opt::END;
        len += 1;
        if len < MIN_BOOTP_LEN {
            self.buf[len..MIN_BOOTP_LEN].fill(0);
            len = MIN_BOOTP_LEN;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal request with the given options (code, value).
    pub(crate) fn request(opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_OFFSET];
        b[0] = OP_BOOTREQUEST;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        for (c, v) in opts {
            b.push(*c);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b.push(opt::END);
        b
    }

    #[test]
    fn parses_summary() {
        let b = request(&[
            (opt::MESSAGE_TYPE, &[1]),
            (opt::REQUESTED_IP, &[10, 0, 0, 5]),
            (opt::CLIENT_ID, &[1, 2, 0, 0, 0, 0, 1]),
            (opt::PARAMETER_LIST, &[1, 3, 6]),
            (
                opt::RELAY_AGENT_INFO,
                &[1, 2, 0xaa, 0xbb, 5, 4, 10, 1, 2, 0],
            ),
        ]);
        let m = Message::new_checked(&b).unwrap();
        let s = m.summary().unwrap();
        assert_eq!(s.message_type, Some(MessageType::Discover));
        assert_eq!(s.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(s.client_id, Some(&[1, 2, 0, 0, 0, 0, 1][..]));
        assert_eq!(s.parameter_list, Some(&[1, 3, 6][..]));
        assert_eq!(s.link_selection, Some(Ipv4Addr::new(10, 1, 2, 0)));
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.chaddr(), &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn rejects_truncated_and_bad_cookie() {
        assert_eq!(
            Message::new_checked(&[0u8; 100]).err(),
            Some(ParseError::TooShort(100))
        );
        let mut b = request(&[(opt::MESSAGE_TYPE, &[1])]);
        b[237] = 0;
        assert_eq!(Message::new_checked(&b).err(), Some(ParseError::BadCookie));
    }

    #[test]
    fn option_overrun_is_an_error_with_offset() {
        let mut b = request(&[(opt::MESSAGE_TYPE, &[1])]);
        b.pop(); // END
        b.extend_from_slice(&[opt::HOST_NAME, 10, b'a']);
        let m = Message::new_checked(&b).unwrap();
        assert_eq!(
            m.summary().err(),
            Some(ParseError::OptionOverrun {
                code: opt::HOST_NAME,
                offset: 243
            })
        );
    }

    #[test]
    fn overload_reads_file_and_sname() {
        let mut b = request(&[(opt::MESSAGE_TYPE, &[3]), (opt::OVERLOAD, &[3])]);
        b[108..114].copy_from_slice(&[opt::REQUESTED_IP, 4, 10, 0, 0, 9]);
        b[114] = opt::END;
        b[44..47].copy_from_slice(&[opt::SERVER_ID, 4, 10]);
        b[47..50].copy_from_slice(&[0, 0, 1]);
        b[50] = opt::END;
        let s = Message::new_checked(&b).unwrap().summary().unwrap();
        assert_eq!(s.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(s.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random inputs of many lengths.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..700 {
            let mut b = vec![0u8; len];
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if len >= 240 {
                b[236..240].copy_from_slice(&MAGIC_COOKIE);
                b[2] = (x % 17) as u8;
            }
            if let Ok(m) = Message::new_checked(&b) {
                let _ = m.summary();
                for o in m.options() {
                    let _ = o;
                }
            }
        }
    }

    #[test]
    fn writer_builds_what_dhcproto_decodes() {
        use dhcproto::{v4, Decodable, Decoder};
        let req = request(&[(opt::MESSAGE_TYPE, &[1])]);
        let m = Message::new_checked(&req).unwrap();
        let mut out = [0u8; 1500];
        let mut w = ReplyWriter::new(&mut out, &m, 576).unwrap();
        w.set_yiaddr(Ipv4Addr::new(10, 0, 0, 7));
        w.option(opt::MESSAGE_TYPE, &[2]).unwrap();
        w.option_ip(opt::SERVER_ID, Ipv4Addr::new(10, 0, 0, 1))
            .unwrap();
        w.option_u32(opt::LEASE_TIME, 3600).unwrap();
        let long = vec![b'x'; 300];
        w.option(43, &long).unwrap();
        let n = w.finish();
        assert!(n >= MIN_BOOTP_LEN);
        let d = v4::Message::decode(&mut Decoder::new(&out[..n])).unwrap();
        assert_eq!(d.opcode(), v4::Opcode::BootReply);
        assert_eq!(d.xid(), 0x1234_5678);
        assert_eq!(d.yiaddr(), Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(
            d.opts().get(v4::OptionCode::MessageType),
            Some(&v4::DhcpOption::MessageType(v4::MessageType::Offer))
        );
        assert_eq!(
            d.opts().get(v4::OptionCode::AddressLeaseTime),
            Some(&v4::DhcpOption::AddressLeaseTime(3600))
        );
        // Our own parser reassembles nothing, but sees both halves of the long option.
        let again = Message::new_checked(&out[..n]).unwrap();
        let total: usize = again
            .options()
            .filter_map(|o| o.ok())
            .filter(|(c, _, _)| *c == 43)
            .map(|(_, v, _)| v.len())
            .sum();
        assert_eq!(total, 300);
    }

    #[test]
    fn optional_options_respect_client_limit() {
        let req = request(&[(opt::MESSAGE_TYPE, &[1])]);
        let m = Message::new_checked(&req).unwrap();
        let mut out = [0u8; 1500];
        let mut w = ReplyWriter::new(&mut out, &m, 300).unwrap();
        assert!(w.option_if_room(15, &[b'a'; 40]));
        assert!(!w.option_if_room(43, &[b'b'; 40]));
        assert!(w.finish() == 300);
    }
}
