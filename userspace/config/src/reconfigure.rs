//! The `[reconfigure]` section: server-initiated reconfiguration (DHCPv4 FORCERENEW,
//! RFC 3203) with RFC 6704 nonce authentication or an RFC 3118 §4 configuration token.
//! Present = the server offers reconfigure keys to clients that support them and accepts
//! triggers (control API `POST /v1/reconfigure`, `xdhcpd ctl reconfigure`).
//!
//! ```toml
//! [reconfigure]
//! retries = 8                # FORCERENEWs sent per client before the attempt aborts
//! first-retry-ms = 2000      # first retry this long after the first send, then doubling
//! backoff = 2                # factor between two retry intervals
//! rate = 100                 # clients started per second (0 = no limit)
//! clear-on-abort = false     # abort deletes the binding instead of restoring it
//! deferred-nak = false       # abort keeps the flag: the next renewal gets NAK
//! allow-unauthenticated = false  # send FORCERENEW without authentication when the
//!                                # client has no key and no token is configured
//! token = ""                 # RFC 3118 §4 configuration token (empty: none)
//! nonce = true               # offer RFC 6704 reconfigure keys (option 145 clients)
//! secret = "hex"             # 16-64 bytes the per-client keys derive from (default:
//!                            # generated, kept in <lease-file>.reconfigure-secret)
//! ```

use super::error::Errors;
use super::reader::{boolean, parse_hex, string, u32_in, Table};

pub(crate) const RECONFIGURE_KEYS: &[&str] = &[
    "retries",
    "first-retry-ms",
    "backoff",
    "rate",
    "clear-on-abort",
    "deferred-nak",
    "allow-unauthenticated",
    "on-registration-change",
    "token",
    "nonce",
    "secret",
];

/// A validated `[reconfigure]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconfigureConfig {
    /// FORCERENEWs sent per client (the first and the retries), at least 1.
    pub retries: u32,
    /// Milliseconds from the first send to the first retry.
    pub first_retry_ms: u32,
    /// Factor from one retry interval to the next (1 = constant).
    pub backoff: u32,
    /// Clients started per second (0 = no limit).
    pub rate: u32,
    /// On abort, delete the binding (else: back to bound, unchanged).
    pub clear_on_abort: bool,
    /// On abort, keep the binding flagged: its next REQUEST gets NAK.
    pub deferred_nak: bool,
    /// Send FORCERENEW to clients with neither a reconfigure key nor a configured token.
    pub allow_unauthenticated: bool,
    /// RFC 3118 §4 configuration token sent in the clear (empty: none).
    pub token: Vec<u8>,
    /// Offer RFC 6704 reconfigure keys to clients that send option 145.
    pub nonce: bool,
    /// Secret the per-client keys derive from; None = the daemon's generated one.
    pub secret: Option<Vec<u8>>,
    /// Reconfigure a client's bindings when its registration's group or fixed address
    /// changes, or the registration is removed.
    pub on_registration_change: bool,
}

impl Default for ReconfigureConfig {
    fn default() -> Self {
        ReconfigureConfig {
            retries: 8,
            first_retry_ms: 2000,
            backoff: 2,
            rate: 100,
            clear_on_abort: false,
            deferred_nak: false,
            allow_unauthenticated: false,
            token: Vec::new(),
            nonce: true,
            secret: None,
            on_registration_change: false,
        }
    }
}

pub(crate) fn read_reconfigure(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> ReconfigureConfig {
    let mut c = ReconfigureConfig::default();
    if let Some(f) = t.get("retries") {
        c.retries = u32_in(errs, &f, 1, 32, "between 1 and 32").unwrap_or(c.retries);
    }
    if let Some(f) = t.get("first-retry-ms") {
        c.first_retry_ms =
            u32_in(errs, &f, 10, 3_600_000, "between 10 and 3600000").unwrap_or(c.first_retry_ms);
    }
    if let Some(f) = t.get("backoff") {
        c.backoff = u32_in(errs, &f, 1, 16, "between 1 and 16").unwrap_or(c.backoff);
    }
    if let Some(f) = t.get("rate") {
        c.rate = u32_in(errs, &f, 0, 10_000_000, "between 0 and 10000000").unwrap_or(c.rate);
    }
    for (key, slot) in [
        ("clear-on-abort", &mut c.clear_on_abort),
        ("deferred-nak", &mut c.deferred_nak),
        ("allow-unauthenticated", &mut c.allow_unauthenticated),
        ("nonce", &mut c.nonce),
        ("on-registration-change", &mut c.on_registration_change),
    ] {
        if let Some(f) = t.get(key) {
            if let Some(b) = boolean(errs, &f) {
                *slot = b;
            }
        }
    }
    if let Some(f) = t.get("token") {
        if let Some(s) = string(errs, &f) {
            // The RFC 3118 option holds at most 255 - 11 bytes of token.
            if s.len() > 200 {
                errs.push(&f.span(), &f.path, "token is longer than 200 bytes");
            } else {
                c.token = s.as_bytes().to_vec();
            }
        }
    }
    if let Some(f) = t.get("secret") {
        if let Some(s) = string(errs, &f) {
            match parse_hex(s) {
                Ok(b) if (16..=64).contains(&b.len()) => c.secret = Some(b),
                Ok(b) => errs.push(
                    &f.span(),
                    &f.path,
                    format!("secret is {} bytes: must be 16 to 64", b.len()),
                ),
                Err(e) => errs.push(&f.span(), &f.path, format!("secret: {e}")),
            }
        }
    }
    if c.clear_on_abort && c.deferred_nak {
        errs.push(
            &t.span,
            "reconfigure",
            "clear-on-abort and deferred-nak exclude each other",
        );
    }
    c
}

/// A subnet's FORCERENEW schedule over the `[reconfigure]` one (`[[subnet]]`
/// `reconfigure-retries`, `reconfigure-first-retry-ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconfigureOverride {
    /// Sends per client in this subnet.
    pub retries: Option<u32>,
    /// First retry interval in this subnet (ms).
    pub first_retry_ms: Option<u32>,
}

impl ReconfigureOverride {
    /// `global` with this subnet's values on top.
    pub fn apply(&self, global: &ReconfigureConfig) -> (u32, u32) {
        (
            self.retries.unwrap_or(global.retries),
            self.first_retry_ms.unwrap_or(global.first_retry_ms),
        )
    }
}

pub(crate) fn read_override(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> ReconfigureOverride {
    ReconfigureOverride {
        retries: t
            .get("reconfigure-retries")
            .and_then(|f| u32_in(errs, &f, 1, 32, "between 1 and 32")),
        first_retry_ms: t
            .get("reconfigure-first-retry-ms")
            .and_then(|f| u32_in(errs, &f, 10, 3_600_000, "between 10 and 3600000")),
    }
}
