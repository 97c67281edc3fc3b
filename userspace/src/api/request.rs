//! What an API request says, parsed from the raw path segments, query strings and bodies the
//! handlers receive: plain functions over strings and bytes (no IO), so the fuzz target
//! `control_request` drives exactly what the server runs. Every error is a reason for a 400.

use std::net::{Ipv4Addr, Ipv6Addr};

use lease_store::{ClientKey, LeaseState};
use serde_json::Value;

/// Longest request body the API reads (failover commands and reload take small JSON).
pub const MAX_BODY: usize = 4096;
/// Default and largest page of `GET /v1/pools/{id}/leases`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// An IPv4 address from a path segment.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (dotted quad)"))
}

/// Hex octets: `aa:bb:cc`, `aa-bb-cc` or `aabbcc`.
pub fn parse_hex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let digits: String = if s.contains([':', '-']) {
        let mut out = String::with_capacity(s.len());
        for part in s.split([':', '-']) {
            match part.len() {
                1 => {
                    out.push('0');
                    out.push_str(part);
                }
                2 => out.push_str(part),
                _ => {
                    return Err(format!(
                        "{what} {s:?}: octet {part:?} is not 1 or 2 hex digits"
                    ))
                }
            }
        }
        out
    } else {
        s.to_string()
    };
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{what} {s:?}: expected hex octets (aa:bb:.. or aabb..)"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{what} {s:?}: not hex"))
        })
        .collect()
}

/// A hardware address of 1 to 16 octets.
pub fn parse_mac(s: &str) -> Result<Vec<u8>, String> {
    let hw = parse_hex(s, "MAC")?;
    if hw.len() > 16 {
        return Err(format!("MAC {s:?}: {} octets (1 to 16)", hw.len()));
    }
    Ok(hw)
}

/// A client identifier (option 61 value, type octet first) as the lease table keys it.
pub fn parse_client_id(s: &str) -> Result<ClientKey, String> {
    let id = parse_hex(s, "client-id")?;
    if id.len() > 255 {
        return Err(format!("client-id: {} octets (at most 255)", id.len()));
    }
    Ok(ClientKey::from_client_id(&id))
}

/// A pool id from a path segment.
pub fn parse_pool_id(s: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a pool id (a whole number, see GET /v1/pools)"))
}

/// `GET /v1/pools/{id}/leases` query: `limit`, `after` (the last address of the previous
/// page), `state` (comma separated; default every state but free).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    pub after: Option<Ipv4Addr>,
    pub states: [bool; LeaseState::COUNT],
}

/// Decodes `%XX` and `+` of one query component.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad %-escape at byte {i} of the query"))?;
                out.push(h);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "query is not UTF-8".to_string())
}

/// `GET /v1/failover/relays?all=true`: every relay followed, not only the interrupted ones.
pub fn parse_relays_query(query: Option<&str>) -> Result<bool, String> {
    let mut all = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let (k, v) = (unescape(k)?, unescape(v)?);
        match (k.as_str(), v.as_str()) {
            ("all", "true" | "1") => all = true,
            ("all", "false" | "0") => all = false,
            ("all", v) => return Err(format!("all={v:?}: expected true or false")),
            (k, _) => return Err(format!("unknown query parameter {k:?}: expected all")),
        }
    }
    Ok(all)
}

/// `?relationship=NAME` of the failover routes (N:1: which relationship); None when absent.
pub fn parse_relationship_query(query: Option<&str>) -> Result<Option<String>, String> {
    let mut rel = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (unescape(k)?, unescape(v)?);
        match k.as_str() {
            "relationship" if v.is_empty() => {
                return Err("relationship=: expected a relationship name".into())
            }
            "relationship" => rel = Some(v),
            k => {
                return Err(format!(
                    "unknown query parameter {k:?}: expected relationship"
                ))
            }
        }
    }
    Ok(rel)
}

pub fn parse_page_query(query: Option<&str>) -> Result<PageQuery, String> {
    let mut q = PageQuery {
        limit: DEFAULT_LIMIT,
        after: None,
        states: [true; LeaseState::COUNT],
    };
    q.states[LeaseState::Free as usize] = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (unescape(k)?, unescape(v)?);
        match k.as_str() {
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit={v:?}: expected 1 to {MAX_LIMIT}"))?;
            }
            "after" => q.after = Some(parse_ip(&v).map_err(|e| format!("after: {e}"))?),
            "state" => {
                let mut set = [false; LeaseState::COUNT];
                for s in v.split(',').map(str::trim) {
                    let st = LeaseState::ALL
                        .iter()
                        .find(|x| x.as_str() == s)
                        .ok_or_else(|| {
                            format!(
                                "state={s:?}: expected one of {}",
                                LeaseState::ALL.map(|x| x.as_str()).join(", ")
                            )
                        })?;
                    set[*st as usize] = true;
                }
                q.states = set;
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?} (limit, after, state)"
                ))
            }
        }
    }
    Ok(q)
}

/// `POST /v1/failover/partner-down` body: `{"since": UNIX | "-3d" | "RFC 3339" | null,
/// "force": bool}`; an empty body is `{}`. `now` resolves relative times.
pub fn parse_partner_down(body: &[u8], now: u32) -> Result<(Option<u32>, bool), String> {
    let v = json_object(body)?;
    let mut since = None;
    let mut force = false;
    for (k, val) in v.iter() {
        match (k.as_str(), val) {
            ("since", Value::Null) => {}
            ("since", Value::Number(n)) => {
                let t = n
                    .as_u64()
                    .filter(|t| *t > 0 && *t <= u64::from(now))
                    .ok_or_else(|| format!("since: {n} is not a past Unix time"))?;
                since = Some(t as u32);
            }
            ("since", Value::String(s)) => {
                since = Some(crate::control::parse_since(s, now)?);
            }
            ("force", Value::Bool(b)) => force = *b,
            ("since", _) => return Err("since: expected a Unix time, a string or null".into()),
            ("force", _) => return Err("force: expected true or false".into()),
            (other, _) => return Err(format!("unknown field {other:?} (since, force)")),
        }
    }
    Ok((since, force))
}

/// A body that must be empty or a JSON object without fields (recover, pause, reload).
pub fn parse_empty(body: &[u8]) -> Result<(), String> {
    let v = json_object(body)?;
    match v.keys().next() {
        None => Ok(()),
        Some(k) => Err(format!("unknown field {k:?}: this command takes none")),
    }
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    if body.len() > MAX_BODY {
        return Err(format!("request body longer than {MAX_BODY} bytes"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("request body: expected a JSON object".into()),
        Err(e) => Err(format!("request body is not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconfigure_dhcpv6_selectors_parse_and_match() {
        use lease_store::v6::{Binding6, IaKind};
        let p = |b: &str| parse_reconfigure(b.as_bytes());
        let v4 = p(r#"{"ip":"10.0.0.1"}"#).unwrap();
        assert!(v4.is_v4() && !v4.is_v6());
        let a = p(r#"{"ip":"fd77::1:5"}"#).unwrap();
        assert_eq!(a, ReconfTarget::Ip6("fd77::1:5".parse().unwrap()));
        assert!(a.is_v6() && !a.is_v4());
        let all = p(r#"{"all":true}"#).unwrap();
        assert!(all.is_v4() && all.is_v6());
        let na = {
            let mut b = Binding6::new(IaKind::Na, &[0, 3, 1], 1, [0; 16], 128);
            b.addr = "fd77::1:5".parse::<Ipv6Addr>().unwrap().octets();
            b.link = 1;
            b
        };
        let pd = {
            let mut b = Binding6::new(IaKind::Pd, &[0, 3, 2], 2, [0; 16], 56);
            b.addr = "fd77:100:0:ff00::".parse::<Ipv6Addr>().unwrap().octets();
            b
        };
        assert!(a.matches6(&na) && !a.matches6(&pd));
        // An address inside a delegated prefix names that prefix's client.
        let inside = p(r#"{"ip":"fd77:100:0:ff12::1"}"#).unwrap();
        assert!(inside.matches6(&pd) && !inside.matches6(&na));
        let d = p(r#"{"duid":"00:03:02"}"#).unwrap();
        assert!(d.matches6(&pd) && !d.matches6(&na));
        let net = p(r#"{"subnet":"fd77:100::/40"}"#).unwrap();
        assert!(net.matches6(&pd) && !net.matches6(&na));
        assert_eq!(
            p(r#"{"subnet":"10.0.0.0/8"}"#),
            Ok(ReconfTarget::Subnet(Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        let link = p(r#"{"link":1}"#).unwrap();
        assert!(link.matches6(&na) && !link.matches6(&pd));
        // A class names DHCPv4 bindings only (membership is judged by the daemon).
        let class = p(r#"{"class":"moved"}"#).unwrap();
        assert_eq!(class, ReconfTarget::Class("moved".into()));
        assert!(class.is_v4() && !class.is_v6() && !class.matches6(&na));
        for bad in [r#"{"class":""}"#, r#"{"class":7}"#] {
            assert!(p(bad).is_err(), "{bad}");
        }
        // A v6 selector never names a DHCPv4 binding, nor a v4 one a v6 client.
        assert!(!v4.matches6(&na));
        for bad in [
            r#"{"ip":"fd77::zz"}"#,
            r#"{"duid":""}"#,
            r#"{"duid":"xyz"}"#,
            r#"{"subnet":"fd77::/129"}"#,
            r#"{"link":-1}"#,
            r#"{"link":"0"}"#,
            r#"{"link":70000}"#,
        ] {
            assert!(p(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn api_request_parsers_accept_and_refuse() {
        assert_eq!(parse_ip("10.0.0.1"), Ok(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse_ip("10.0.0").is_err());
        assert_eq!(
            parse_mac("02:00:0a:0b:0c:0d").unwrap(),
            [2, 0, 10, 11, 12, 13]
        );
        assert_eq!(
            parse_mac("02-00-0a-0b-0c-0d").unwrap(),
            [2, 0, 10, 11, 12, 13]
        );
        assert_eq!(parse_mac("02000a0b0c0d").unwrap(), [2, 0, 10, 11, 12, 13]);
        assert!(parse_mac("02:00:0a:0b:0c:zz").is_err());
        assert!(parse_mac("020").is_err());
        assert!(parse_mac("").is_err());
        assert!(parse_mac(&"00".repeat(17)).is_err());
        assert_eq!(
            parse_client_id("01:02:00:0a:0b:0c:0d").unwrap(),
            ClientKey::from_client_id(&[1, 2, 0, 10, 11, 12, 13])
        );
        assert_eq!(parse_pool_id("3"), Ok(3));
        assert!(parse_pool_id("-1").is_err());

        let q = parse_page_query(None).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert!(!q.states[LeaseState::Free as usize]);
        assert!(q.states[LeaseState::Active as usize]);
        let q = parse_page_query(Some("limit=5&after=10.0.0.9&state=active%2Coffered")).unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(q.after, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert!(q.states[LeaseState::Offered as usize] && !q.states[LeaseState::Expired as usize]);
        for bad in [
            "limit=0",
            "limit=10001",
            "limit=x",
            "after=1.2.3",
            "state=bound",
            "x=1",
            "after=%zz",
        ] {
            assert!(parse_page_query(Some(bad)).is_err(), "{bad}");
        }

        let now = 1_800_000_000;
        assert_eq!(parse_partner_down(b"", now), Ok((None, false)));
        assert_eq!(parse_partner_down(b"{}", now), Ok((None, false)));
        assert_eq!(
            parse_partner_down(br#"{"since":1700000000,"force":true}"#, now),
            Ok((Some(1_700_000_000), true))
        );
        assert_eq!(
            parse_partner_down(br#"{"since":"-1h"}"#, now),
            Ok((Some(now - 3600), false))
        );
        for bad in [
            &br#"{"since":1900000000}"#[..],
            br#"{"since":true}"#,
            br#"{"force":1}"#,
            br#"{"forse":true}"#,
            br#"[1]"#,
            br#"{"since""#,
        ] {
            assert!(
                parse_partner_down(bad, now).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_partner_down(&[b' '; MAX_BODY + 1], now).is_err());
        assert_eq!(parse_empty(b" "), Ok(()));
        assert!(parse_empty(br#"{"x":1}"#).is_err());
    }
}

/// Which bindings `POST /v1/reconfigure` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconfTarget {
    /// The binding of one address.
    Ip(Ipv4Addr),
    /// Bindings of a hardware address.
    Mac(Vec<u8>),
    /// Bindings of a client identifier (option 61, hex).
    ClientId(ClientKey),
    /// Every binding in a pool (by id).
    Pool(u32),
    /// Every binding inside a network (`a.b.c.d/len`).
    Subnet(Ipv4Addr, u8),
    /// Every binding (DHCPv4 and DHCPv6).
    All,
    /// DHCPv6: the client holding an address, or a delegated prefix containing it.
    Ip6(Ipv6Addr),
    /// DHCPv6: the client with this DUID (hex).
    Duid(Vec<u8>),
    /// DHCPv6: every client with an address or delegated prefix inside `prefix/len`.
    Prefix6(Ipv6Addr, u8),
    /// DHCPv6: every client of one link (`[[subnet6]]` by its position, 0-based).
    Link6(u16),
    /// DHCPv4: every binding whose client is a member of this class (judged from what the
    /// binding keeps: `ReconfHandle::class_slots`).
    Class(String),
}

/// Whether `a`/`alen` (an address, 128, or a delegated prefix) lies inside `p`/`plen`.
pub fn v6_inside(a: &[u8; 16], alen: u8, p: &Ipv6Addr, plen: u8) -> bool {
    let m = |l: u8| {
        if l == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(l.min(128)))
        }
    };
    alen >= plen && u128::from_be_bytes(*a) & m(plen) == u128::from(*p) & m(plen)
}

impl ReconfTarget {
    /// Whether the binding `l` (address `l.addr`, in pool `pool`) is one of the target's.
    pub fn matches(&self, l: &lease_store::Lease, pool: u32) -> bool {
        match self {
            ReconfTarget::Ip(ip) => l.addr == *ip,
            ReconfTarget::Mac(m) => l.hw() == m.as_slice(),
            ReconfTarget::ClientId(k) => l.client == *k,
            ReconfTarget::Pool(p) => pool == *p,
            ReconfTarget::Subnet(net, len) => {
                let mask = if *len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(*len))
                };
                u32::from(l.addr) & mask == u32::from(*net) & mask
            }
            ReconfTarget::All => true,
            // Needs the configuration and the registrations: `ReconfHandle::class_slots`.
            ReconfTarget::Class(_) => false,
            ReconfTarget::Ip6(_)
            | ReconfTarget::Duid(_)
            | ReconfTarget::Prefix6(..)
            | ReconfTarget::Link6(_) => false,
        }
    }

    /// Whether the target names DHCPv4 bindings.
    pub fn is_v4(&self) -> bool {
        !self.is_v6() || *self == ReconfTarget::All
    }

    /// Whether the target names DHCPv6 clients.
    pub fn is_v6(&self) -> bool {
        matches!(
            self,
            ReconfTarget::All
                | ReconfTarget::Ip6(_)
                | ReconfTarget::Duid(_)
                | ReconfTarget::Prefix6(..)
                | ReconfTarget::Link6(_)
        )
    }

    /// Whether the DHCPv6 binding `b` is one of the target's.
    pub fn matches6(&self, b: &lease_store::v6::Binding6) -> bool {
        match self {
            ReconfTarget::All => true,
            ReconfTarget::Ip6(a) => v6_inside(&a.octets(), 128, &b.ip(), b.prefix_len),
            ReconfTarget::Duid(d) => b.duid.as_slice() == d.as_slice(),
            ReconfTarget::Prefix6(p, len) => v6_inside(&b.addr, b.prefix_len, p, *len),
            ReconfTarget::Link6(l) => b.link == *l,
            _ => false,
        }
    }
}

/// The body of `POST /v1/reconfigure`: exactly one of `{"ip"}` (IPv4 or IPv6), `{"mac"}`,
/// `{"client-id"}`, `{"duid"}`, `{"pool"}`, `{"subnet"}` (IPv4 or IPv6 prefix), `{"link"}`
/// (a `[[subnet6]]` by position), `{"class"}` (a `[[class]]` name), `{"all": true}`.
pub fn parse_reconfigure(body: &[u8]) -> Result<ReconfTarget, String> {
    let v = json_object(body)?;
    if v.len() != 1 {
        return Err(
            "name exactly one of \"ip\", \"mac\", \"client-id\", \"duid\", \"pool\", \
             \"subnet\", \"link\", \"class\", \"all\""
                .into(),
        );
    }
    let (k, val) = v.iter().next().ok_or("empty request")?;
    let text = |what: &str| -> Result<&str, String> {
        val.as_str()
            .ok_or_else(|| format!("field {what:?}: expected a string"))
    };
    match k.as_str() {
        "ip" => {
            let s = text("ip")?;
            match s.parse::<Ipv6Addr>() {
                Ok(a) => Ok(ReconfTarget::Ip6(a)),
                Err(_) => parse_ip(s)
                    .map(ReconfTarget::Ip)
                    .map_err(|_| format!("field \"ip\": {s:?} is not an IPv4 or IPv6 address")),
            }
        }
        "duid" => {
            let d = parse_hex(text("duid")?, "duid")?;
            if d.is_empty() || d.len() > lease_store::v6::DUID_MAX {
                return Err(format!(
                    "field \"duid\": {} octets (1 to {})",
                    d.len(),
                    lease_store::v6::DUID_MAX
                ));
            }
            Ok(ReconfTarget::Duid(d))
        }
        "link" => val
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(ReconfTarget::Link6)
            .ok_or_else(|| "field \"link\": expected a [[subnet6]] position (0, 1, ...)".into()),
        "mac" => parse_mac(text("mac")?).map(ReconfTarget::Mac),
        "client-id" => parse_client_id(text("client-id")?).map(ReconfTarget::ClientId),
        "pool" => match val {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(ReconfTarget::Pool)
                .ok_or_else(|| format!("field \"pool\": {n} is not a pool id")),
            Value::String(s) => parse_pool_id(s).map(ReconfTarget::Pool),
            _ => Err("field \"pool\": expected a pool id".into()),
        },
        "subnet" => {
            let s = text("subnet")?;
            let (a, l) = s.split_once('/').ok_or_else(|| {
                format!("field \"subnet\": {s:?} is not a.b.c.d/len or an IPv6 prefix/len")
            })?;
            if let Ok(p) = a.trim().parse::<Ipv6Addr>() {
                let len: u8 =
                    l.trim().parse().ok().filter(|n| *n <= 128).ok_or_else(|| {
                        format!("field \"subnet\": prefix length {l:?} is not 0-128")
                    })?;
                return Ok(ReconfTarget::Prefix6(p, len));
            }
            let addr = parse_ip(a)?;
            let len: u8 = l
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 32)
                .ok_or_else(|| format!("field \"subnet\": prefix length {l:?} is not 0-32"))?;
            Ok(ReconfTarget::Subnet(addr, len))
        }
        "class" => {
            let c = text("class")?;
            if c.is_empty() || c.len() > 64 {
                return Err(format!(
                    "field \"class\": a class name of 1 to 64 characters, not {} octets",
                    c.len()
                ));
            }
            Ok(ReconfTarget::Class(c.to_string()))
        }
        "all" => match val {
            Value::Bool(true) => Ok(ReconfTarget::All),
            _ => Err("field \"all\": must be true".into()),
        },
        other => Err(format!("unknown field {other:?}")),
    }
}
