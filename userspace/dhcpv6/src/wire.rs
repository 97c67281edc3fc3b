//! DHCPv6 wire format (RFC 8415 §8, §9, §21): zero-copy views over a
//! received message and a writer that builds a reply in a caller buffer
//! (nested options such as IA_NA or Relay Message get their length patched
//! when closed). Nothing here allocates.

/// Message types (RFC 8415 §7.3).
pub mod msg {
    /// Solicit.
    pub const SOLICIT: u8 = 1;
    /// Advertise.
    pub const ADVERTISE: u8 = 2;
    /// Request.
    pub const REQUEST: u8 = 3;
    /// Confirm.
    pub const CONFIRM: u8 = 4;
    /// Renew.
    pub const RENEW: u8 = 5;
    /// Rebind.
    pub const REBIND: u8 = 6;
    /// Reply.
    pub const REPLY: u8 = 7;
    /// Release.
    pub const RELEASE: u8 = 8;
    /// Decline.
    pub const DECLINE: u8 = 9;
    /// Reconfigure.
    pub const RECONFIGURE: u8 = 10;
    /// Information-request.
    pub const INFORMATION_REQUEST: u8 = 11;
    /// Relay-forward.
    pub const RELAY_FORW: u8 = 12;
    /// Relay-reply.
    pub const RELAY_REPL: u8 = 13;
    /// Leasequery (RFC 5007 §4.2).
    pub const LEASEQUERY: u8 = 14;
    /// Leasequery-reply (RFC 5007 §4.3).
    pub const LEASEQUERY_REPLY: u8 = 15;
}

/// Option codes used by the server.
pub mod opt {
    /// Client Identifier.
    pub const CLIENTID: u16 = 1;
    /// Server Identifier.
    pub const SERVERID: u16 = 2;
    /// IA_NA.
    pub const IA_NA: u16 = 3;
    /// IA_TA.
    pub const IA_TA: u16 = 4;
    /// IA Address.
    pub const IAADDR: u16 = 5;
    /// Option Request.
    pub const ORO: u16 = 6;
    /// Preference.
    pub const PREFERENCE: u16 = 7;
    /// Elapsed Time.
    pub const ELAPSED_TIME: u16 = 8;
    /// Relay Message.
    pub const RELAY_MSG: u16 = 9;
    /// Authentication (RFC 8415 §21.11).
    pub const AUTH: u16 = 11;
    /// Status Code.
    pub const STATUS_CODE: u16 = 13;
    /// Rapid Commit.
    pub const RAPID_COMMIT: u16 = 14;
    /// User Class.
    pub const USER_CLASS: u16 = 15;
    /// Vendor Class.
    pub const VENDOR_CLASS: u16 = 16;
    /// Vendor-specific Information.
    pub const VENDOR_OPTS: u16 = 17;
    /// Interface-Id.
    pub const INTERFACE_ID: u16 = 18;
    /// Reconfigure Message (RFC 8415 §21.19).
    pub const RECONF_MSG: u16 = 19;
    /// Reconfigure Accept.
    pub const RECONF_ACCEPT: u16 = 20;
    /// DNS Recursive Name Server (RFC 3646).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain Search List (RFC 3646).
    pub const DOMAIN_LIST: u16 = 24;
    /// IA_PD.
    pub const IA_PD: u16 = 25;
    /// IA Prefix.
    pub const IAPREFIX: u16 = 26;
    /// Relay Agent Remote-ID (RFC 4649).
    pub const REMOTE_ID: u16 = 37;
    /// Relay Agent Subscriber-ID (RFC 4580).
    pub const SUBSCRIBER_ID: u16 = 38;
    /// NTP Server (RFC 5908).
    pub const NTP_SERVER: u16 = 56;
    /// Leasequery query (RFC 5007 §4.1.2.1): query-type, link-address, query-options.
    pub const LQ_QUERY: u16 = 44;
    /// Client data of a Leasequery-reply (RFC 5007 §4.1.2.2).
    pub const CLIENT_DATA: u16 = 45;
    /// Client last transaction time (RFC 5007 §4.1.2.3), seconds ago.
    pub const CLT_TIME: u16 = 46;
    /// Relay data (RFC 5007 §4.1.2.4): peer-address and the relay's Relay-Forward.
    pub const LQ_RELAY_DATA: u16 = 47;
    /// Client's links (RFC 5007 §4.1.2.5): the links a client has bindings on.
    pub const LQ_CLIENT_LINK: u16 = 48;
    /// Client Link-Layer Address (RFC 6939).
    pub const CLIENT_LINKLAYER_ADDR: u16 = 79;
}

/// Status codes (RFC 8415 §21.13, RFC 8415 §21.22).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// UnspecFail.
    pub const UNSPEC_FAIL: u16 = 1;
    /// NoAddrsAvail.
    pub const NO_ADDRS_AVAIL: u16 = 2;
    /// NoBinding.
    pub const NO_BINDING: u16 = 3;
    /// NotOnLink.
    pub const NOT_ON_LINK: u16 = 4;
    /// UseMulticast.
    pub const USE_MULTICAST: u16 = 5;
    /// NoPrefixAvail.
    pub const NO_PREFIX_AVAIL: u16 = 6;
    /// UnknownQueryType (RFC 5007 §4.1.3).
    pub const UNKNOWN_QUERY_TYPE: u16 = 7;
    /// MalformedQuery (RFC 5007 §4.1.3).
    pub const MALFORMED_QUERY: u16 = 8;
    /// NotConfigured (RFC 5007 §4.1.3).
    pub const NOT_CONFIGURED: u16 = 9;
    /// NotAllowed (RFC 5007 §4.1.3).
    pub const NOT_ALLOWED: u16 = 10;
}

/// A wire error: what was wrong and at which offset of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset (from the start of the outermost message).
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.what)
    }
}

/// Options in a buffer; yields `(code, body, offset of body)`.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Options<'a> {
    /// Options in `buf`, whose first byte is at `base` in the whole message.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Options { buf, pos: 0, base }
    }

    /// Checks the framing of every option (a truncated option is an error).
    pub fn check(self) -> Result<(), WireError> {
        for o in self {
            o?;
        }
        Ok(())
    }

    /// The body of the first option `code` (framing assumed checked).
    pub fn find(self, code: u16) -> Option<&'a [u8]> {
        self.flatten().find(|o| o.0 == code).map(|o| o.1)
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u16, &'a [u8], usize), WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let at = self.base + self.pos;
        if rest.len() < 4 {
            self.pos = self.buf.len();
            return Some(Err(WireError {
                offset: at,
                what: "truncated option header",
            }));
        }
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if rest.len() < 4 + len {
            self.pos = self.buf.len();
            return Some(Err(WireError {
                offset: at,
                what: "option longer than its container",
            }));
        }
        self.pos += 4 + len;
        Some(Ok((code, &rest[4..4 + len], at + 4)))
    }
}

/// A client/server message (RFC 8415 §8).
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// msg-type.
    pub msg_type: u8,
    /// transaction-id.
    pub xid: [u8; 3],
    /// Options (framing checked).
    pub options: Options<'a>,
}

impl<'a> Message<'a> {
    /// Parses a client/server message starting at `base` of the outer packet.
    pub fn parse(b: &'a [u8], base: usize) -> Result<Self, WireError> {
        if b.len() < 4 {
            return Err(WireError {
                offset: base,
                what: "message shorter than its 4-byte header",
            });
        }
        let options = Options::new(&b[4..], base + 4);
        options.check()?;
        Ok(Message {
            msg_type: b[0],
            xid: [b[1], b[2], b[3]],
            options,
        })
    }
}

/// A relay message header (RFC 8415 §9).
#[derive(Clone, Copy, Debug)]
pub struct Relay<'a> {
    /// msg-type (12 or 13).
    pub msg_type: u8,
    /// hop-count.
    pub hop_count: u8,
    /// link-address.
    pub link: [u8; 16],
    /// peer-address.
    pub peer: [u8; 16],
    /// Options (framing checked).
    pub options: Options<'a>,
}

impl<'a> Relay<'a> {
    /// Parses a relay message starting at `base` of the outer packet.
    pub fn parse(b: &'a [u8], base: usize) -> Result<Self, WireError> {
        if b.len() < 34 {
            return Err(WireError {
                offset: base,
                what: "relay message shorter than its 34-byte header",
            });
        }
        let mut link = [0u8; 16];
        let mut peer = [0u8; 16];
        link.copy_from_slice(&b[2..18]);
        peer.copy_from_slice(&b[18..34]);
        let options = Options::new(&b[34..], base + 34);
        options.check()?;
        Ok(Relay {
            msg_type: b[0],
            hop_count: b[1],
            link,
            peer,
            options,
        })
    }
}

/// An IA_NA or IA_PD body (same fixed part: IAID, T1, T2; RFC 8415 §21.4, §21.21).
#[derive(Clone, Copy, Debug)]
pub struct Ia<'a> {
    /// IAID.
    pub iaid: u32,
    /// T1 (a client's hint).
    pub t1: u32,
    /// T2 (a client's hint).
    pub t2: u32,
    /// IA options (IAADDR / IAPREFIX, status).
    pub options: Options<'a>,
}

impl<'a> Ia<'a> {
    /// Parses an IA body found at `base`.
    pub fn parse(b: &'a [u8], base: usize) -> Result<Self, WireError> {
        if b.len() < 12 {
            return Err(WireError {
                offset: base,
                what: "IA shorter than 12 bytes",
            });
        }
        let options = Options::new(&b[12..], base + 12);
        options.check()?;
        Ok(Ia {
            iaid: be32(&b[0..4]),
            t1: be32(&b[4..8]),
            t2: be32(&b[8..12]),
            options,
        })
    }
}

/// An IA Address (`prefix_len` 128) or IA Prefix hint/entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IaEntry {
    /// Address or prefix.
    pub addr: [u8; 16],
    /// 128 for an address.
    pub prefix_len: u8,
    /// Preferred lifetime.
    pub preferred: u32,
    /// Valid lifetime.
    pub valid: u32,
}

impl IaEntry {
    /// Parses an IAADDR body (RFC 8415 §21.6).
    pub fn parse_addr(b: &[u8], base: usize) -> Result<Self, WireError> {
        if b.len() < 24 {
            return Err(WireError {
                offset: base,
                what: "IAADDR shorter than 24 bytes",
            });
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[..16]);
        Ok(IaEntry {
            addr,
            prefix_len: 128,
            preferred: be32(&b[16..20]),
            valid: be32(&b[20..24]),
        })
    }
    /// Parses an IAPREFIX body (RFC 8415 §21.22).
    pub fn parse_prefix(b: &[u8], base: usize) -> Result<Self, WireError> {
        if b.len() < 25 {
            return Err(WireError {
                offset: base,
                what: "IAPREFIX shorter than 25 bytes",
            });
        }
        if b[8] > 128 {
            return Err(WireError {
                offset: base + 8,
                what: "IAPREFIX prefix length over 128",
            });
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[9..25]);
        Ok(IaEntry {
            addr,
            prefix_len: b[8],
            preferred: be32(&b[0..4]),
            valid: be32(&b[4..8]),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Deepest option nesting the writer keeps open (relay levels + IA + entry).
pub const WRITER_DEPTH: usize = 16;

/// Builds a message into a caller buffer. Writes past the end set an
/// overflow flag (checked by [`Writer::finish`]) instead of panicking.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    open: [usize; WRITER_DEPTH],
    depth: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// A writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            open: [0; WRITER_DEPTH],
            depth: 0,
            overflow: false,
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        let end = self.len + b.len();
        if end > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
    }

    /// Message header.
    pub fn header(&mut self, msg_type: u8, xid: [u8; 3]) {
        self.bytes(&[msg_type, xid[0], xid[1], xid[2]]);
    }

    /// Relay header.
    pub fn relay_header(&mut self, msg_type: u8, hop: u8, link: &[u8; 16], peer: &[u8; 16]) {
        self.bytes(&[msg_type, hop]);
        self.bytes(link);
        self.bytes(peer);
    }

    /// One option with its body.
    pub fn option(&mut self, code: u16, body: &[u8]) {
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        self.bytes(&code.to_be_bytes());
        self.bytes(&len.to_be_bytes());
        self.bytes(&body[..usize::from(len)]);
    }

    /// Opens an option whose body follows; [`Writer::close`] writes its length.
    pub fn open(&mut self, code: u16) {
        if self.depth == WRITER_DEPTH {
            self.overflow = true;
            return;
        }
        self.open[self.depth] = self.len;
        self.depth += 1;
        self.bytes(&code.to_be_bytes());
        self.bytes(&[0, 0]);
    }

    /// Closes the innermost open option.
    pub fn close(&mut self) {
        if self.depth == 0 {
            self.overflow = true;
            return;
        }
        self.depth -= 1;
        let at = self.open[self.depth];
        if self.overflow || at + 4 > self.len {
            return;
        }
        let body = self.len - at - 4;
        match u16::try_from(body) {
            Ok(l) => self.buf[at + 2..at + 4].copy_from_slice(&l.to_be_bytes()),
            Err(_) => self.overflow = true,
        }
    }

    /// A Status Code option.
    pub fn status(&mut self, code: u16, text: &str) {
        self.open(opt::STATUS_CODE);
        self.bytes(&code.to_be_bytes());
        self.bytes(text.as_bytes());
        self.close();
    }

    /// Opens an IA_NA / IA_PD with its fixed part.
    pub fn open_ia(&mut self, code: u16, iaid: u32, t1: u32, t2: u32) {
        self.open(code);
        self.bytes(&iaid.to_be_bytes());
        self.bytes(&t1.to_be_bytes());
        self.bytes(&t2.to_be_bytes());
    }

    /// An IAADDR (prefix_len 128) or IAPREFIX entry.
    pub fn entry(&mut self, e: &IaEntry) {
        if e.prefix_len == 128 {
            self.open(opt::IAADDR);
            self.bytes(&e.addr);
            self.bytes(&e.preferred.to_be_bytes());
            self.bytes(&e.valid.to_be_bytes());
        } else {
            self.open(opt::IAPREFIX);
            self.bytes(&e.preferred.to_be_bytes());
            self.bytes(&e.valid.to_be_bytes());
            self.bytes(&[e.prefix_len]);
            self.bytes(&e.addr);
        }
        self.close();
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The message length, or None when it did not fit (or options were left open).
    pub fn finish(self) -> Option<usize> {
        (!self.overflow && self.depth == 0).then_some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcpv6_wire_writer_nests_and_parser_reads_back() {
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        w.relay_header(msg::RELAY_REPL, 0, &[1; 16], &[2; 16]);
        w.option(opt::INTERFACE_ID, b"ifx");
        w.open(opt::RELAY_MSG);
        w.header(msg::REPLY, [1, 2, 3]);
        w.open_ia(opt::IA_PD, 7, 100, 160);
        w.entry(&IaEntry {
            addr: [0xfd; 16],
            prefix_len: 56,
            preferred: 200,
            valid: 300,
        });
        w.close();
        w.close();
        let n = w.finish().unwrap();
        let r = Relay::parse(&buf[..n], 0).unwrap();
        assert_eq!(r.options.find(opt::INTERFACE_ID), Some(&b"ifx"[..]));
        let inner = r.options.find(opt::RELAY_MSG).unwrap();
        let m = Message::parse(inner, 0).unwrap();
        assert_eq!((m.msg_type, m.xid), (msg::REPLY, [1, 2, 3]));
        let ia = Ia::parse(m.options.find(opt::IA_PD).unwrap(), 0).unwrap();
        assert_eq!((ia.iaid, ia.t1, ia.t2), (7, 100, 160));
        let p = IaEntry::parse_prefix(ia.options.find(opt::IAPREFIX).unwrap(), 0).unwrap();
        assert_eq!((p.prefix_len, p.preferred, p.valid), (56, 200, 300));
    }

    #[test]
    fn dhcpv6_wire_refuses_truncation_with_offset() {
        // Header + an option claiming 10 bytes with 2 present.
        let b = [1, 0, 0, 1, 0, 1, 0, 10, 0xaa, 0xbb];
        let e = Message::parse(&b, 0).unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(Relay::parse(&[12; 20], 0).is_err());
        assert!(Ia::parse(&[0; 11], 0).is_err());
        let mut bad = [0u8; 25];
        bad[8] = 129;
        assert_eq!(IaEntry::parse_prefix(&bad, 100).unwrap_err().offset, 108);
    }

    #[test]
    fn dhcpv6_wire_writer_overflow_is_reported_not_panicking() {
        let mut buf = [0u8; 10];
        let mut w = Writer::new(&mut buf);
        w.header(msg::REPLY, [0; 3]);
        w.option(opt::SERVERID, &[0; 20]);
        assert_eq!(w.finish(), None);
        let mut buf = [0u8; 10];
        let mut w = Writer::new(&mut buf);
        w.open(opt::IA_NA);
        assert_eq!(w.finish(), None, "an option left open");
    }
}
