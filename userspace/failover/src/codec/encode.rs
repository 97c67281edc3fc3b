//! Encoding messages and binding transactions.

use super::{opt, BindingTxn, Body, ConnectInfo, Message, HEADER_LEN, MAX_MESSAGE_LEN};

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("failover {msg} message would be {len} bytes, over the 2048-byte limit")]
    /// The encoded message would exceed [`MAX_MESSAGE_LEN`] (2048 bytes).
    TooLong {
        /// The message type name.
        msg: &'static str,
        /// The size it would have had, bytes.
        len: usize,
    },
    #[error("failover option {code} value is {len} bytes, over 65535")]
    /// One option value is longer than its u16 length field can say.
    OptionTooLong {
        /// The option code.
        code: u16,
        /// The value's length, bytes.
        len: usize,
    },
}

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
