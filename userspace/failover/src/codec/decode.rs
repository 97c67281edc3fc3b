//! Decoding one whole message: every length is checked before it is used.

use std::net::Ipv4Addr;

use super::{
    msg, opt, BindingTxn, Body, ConnectInfo, Ddns, Message, RawOption, HEADER_LEN, MAX_MESSAGE_LEN,
    MIN_MESSAGE_LEN,
};

/// Why bytes could not be decoded. Offsets are absolute positions in the byte stream fed to
/// the [`Decoder`](super::Decoder) (or in the slice given to [`decode_message`]). Any error
/// means the connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("failover message at offset {offset}: length {len} outside 12..=2048")]
    /// The message length field (or the bytes given) is outside 12..=2048, or differs from
    /// the frame handed to [`decode_message`].
    BadLength {
        /// Absolute stream offset of the message's first byte.
        offset: u64,
        /// The length found.
        len: u16,
    },
    #[error("failover message at offset {offset}: payload offset {payload_offset} outside 12..=length {len}")]
    /// The header's payload offset points inside the 12-byte header or past the message end.
    BadPayloadOffset {
        /// Absolute stream offset of the message's first byte.
        offset: u64,
        /// The payload offset byte found.
        payload_offset: u8,
        /// The message length field.
        len: u16,
    },
    #[error("failover message at offset {offset}: unknown mandatory message type {msg_type}")]
    /// A message type below 128 (mandatory to understand) that draft-12 does not define.
    UnknownType {
        /// Absolute stream offset of the message's first byte.
        offset: u64,
        /// The type byte found.
        msg_type: u8,
    },
    #[error("failover option at offset {offset}: header or value runs past the message end")]
    /// An option's 4-byte header or its value extends past the end of the message.
    OptionOverflow {
        /// Absolute stream offset of the option's code.
        offset: u64,
    },
    #[error("failover option {code} at offset {offset}: length {len}, expected {expected}")]
    /// An option whose value has the wrong size for its type (e.g. a u32 not 4 bytes long).
    BadOptionLength {
        /// Absolute stream offset of the option's code.
        offset: u64,
        /// The option code.
        code: u16,
        /// The value length found.
        len: u16,
        /// The length(s) the option must have, as text ("4", ">= 2", "1 or 2").
        expected: &'static str,
    },
    #[error("failover option {code} at offset {offset}: appears twice")]
    /// An option that may appear once (per message, or per binding transaction) appears again.
    DuplicateOption {
        /// Absolute stream offset of the second occurrence.
        offset: u64,
        /// The option code.
        code: u16,
    },
    #[error("failover {msg} message at offset {offset}: required option {code} missing")]
    /// A message lacks an option its type requires (addresses-transferred in POOLRESP,
    /// server-state in STATE).
    MissingOption {
        /// Absolute stream offset of the message's first byte.
        offset: u64,
        /// The message type name.
        msg: &'static str,
        /// The code of the missing option.
        code: u16,
    },
    #[error("failover {msg} message at offset {offset}: option {code} appears before any assigned-IP-address")]
    /// A binding option (binding-status, client-identifier...) in a BNDUPD/BNDACK before any
    /// assigned-IP-address, so it belongs to no transaction.
    OrphanBindingOption {
        /// Absolute stream offset of the option's code.
        offset: u64,
        /// The message type name (BNDUPD or BNDACK).
        msg: &'static str,
        /// The option code.
        code: u16,
    },
}

struct Opt<'a> {
    code: u16,
    offset: u64,
    data: &'a [u8],
}

impl RawOption {
    /// An option kept as it came (unknown here, or not for this message).
    fn copy_of(o: &Opt<'_>) -> Self {
        RawOption {
            code: o.code,
            data: o.data.to_vec(),
        }
    }
}

pub(super) fn be_u16(b: &[u8]) -> u16 {
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
                    t.unknown.push(RawOption::copy_of(o));
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
                unknown.push(RawOption::copy_of(o));
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
            _ => unknown.push(RawOption::copy_of(o)),
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
                    unknown.push(RawOption::copy_of(o));
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
                    _ => unknown.push(RawOption::copy_of(o)),
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
                    _ => unknown.push(RawOption::copy_of(o)),
                }
            }
            Body::Disconnect {
                reject_reason: r.unwrap_or(254),
                message: m,
            }
        }
        msg::POOLREQ | msg::UPDREQALL | msg::UPDDONE | msg::UPDREQ | msg::CONTACT => {
            unknown.extend(opts.iter().map(|o| RawOption::copy_of(o)));
            match msg_type {
                msg::POOLREQ => Body::PoolReq,
                msg::UPDREQALL => Body::UpdReqAll,
                msg::UPDDONE => Body::UpdDone,
                msg::UPDREQ => Body::UpdReq,
                _ => Body::Contact,
            }
        }
        t if t >= 128 => {
            unknown.extend(opts.iter().map(|o| RawOption::copy_of(o)));
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
