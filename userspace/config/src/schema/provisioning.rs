//! `[[class]]`, `[[shared-network]]`, `[[host]]` and the settings a class, pool or shared
//! network hands out (named options, `[[...options]]`, vendor spaces 43 / 122 / 125,
//! next-server, boot-file, lease times, host-name from the MAC).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use toml::de::DeValue;

use crate::error::{suggest, Errors};
use crate::net::Ipv4Net;
use crate::provisioning::{
    BytesMatch, Class, ClassId, ClassMatch, ClassSet, Host, PoolRules, Settings, TimeOverride,
    MAX_CLASSES,
};
use crate::reader::{
    array, boolean, int_in, ipv4, ipv4_list, parse_hex, string, tables, u32_in, Field, Table,
};

use super::subnet::{check_domain, put, read_generic_option, text_value};
use super::{Loc, MAX_ADDRS_PER_OPTION, MAX_BOOT_FILE, MAX_TIME, OPTION_KEYS};

/// Keys of a scope's settings (class, pool, shared network).
pub(super) const SETTINGS_KEYS: &[&str] = &[
    "router",
    "dns-servers",
    "domain-name",
    "log-servers",
    "ntp-servers",
    "time-servers",
    "time-offset",
    "tftp-server",
    "boot-file",
    "next-server",
    "options",
    "option-43",
    "option-122",
    "option-125",
    "host-name-from-mac",
    "default-time",
    "min-time",
    "max-time",
];
const MATCH_KEYS: &[&str] = &[
    "vendor-class",
    "vendor-class-prefix",
    "vendor-class-contains",
    "user-class",
    "user-class-prefix",
    "user-class-contains",
    "circuit-id",
    "remote-id",
    "subscriber-id",
    "remote-id-is-chaddr",
    "client-id",
    "hw-prefix",
    "giaddr",
    "group",
    "known",
    "enterprise",
];
const SUB_KEYS: &[&str] = &["code", "hex", "text", "ip", "u8", "u16", "u32", "fqdn"];
const SUB125_KEYS: &[&str] = &[
    "enterprise",
    "code",
    "hex",
    "text",
    "ip",
    "u8",
    "u16",
    "u32",
    "fqdn",
];
const SUB_KINDS: &[&str] = &["hex", "text", "ip", "u8", "u16", "u32", "fqdn"];

/// `name -> id` of every `[[class]]` (read first so anything can refer to a class).
pub(super) type ClassNames = HashMap<String, ClassId>;

fn keys_with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra.iter()).copied().collect()
}

pub(super) fn class_keys() -> Vec<&'static str> {
    keys_with(
        &keys_with(&["name", "vendor-option"], MATCH_KEYS),
        SETTINGS_KEYS,
    )
}

pub(super) fn shared_network_keys() -> Vec<&'static str> {
    keys_with(&["name", "relay-addresses", "deny-unknown"], SETTINGS_KEYS)
}

pub(super) fn pool_keys() -> Vec<&'static str> {
    keys_with(&["range", "allow", "deny", "deny-unknown"], SETTINGS_KEYS)
}

pub(super) const HOST_KEYS: &[&str] = &["hw", "client-id", "group"];

/// Reads every class name; reports duplicates, reserved names and too many classes.
pub(super) fn class_names(errs: &mut Errors<'_>, classes: &[Table<'_, '_>]) -> ClassNames {
    let mut names = ClassNames::new();
    let mut seen: HashMap<String, Loc> = HashMap::new();
    for (i, t) in classes.iter().enumerate() {
        let Some(f) = t.require(errs, "name") else {
            continue;
        };
        let Some(n) = string(errs, &f) else { continue };
        if i >= MAX_CLASSES {
            errs.push(
                &f.span(),
                &f.path,
                format!("class `{n}` is class number {}; at most {MAX_CLASSES} classes may be declared (one bit each in the per-packet class set)", i + 1),
            );
            continue;
        }
        if n.is_empty() || n.len() > 64 {
            errs.push(&f.span(), &f.path, "a class name is 1..=64 characters");
            continue;
        }
        if let Some(prev) = seen.get(n) {
            let line = errs.position(prev.span.start).line;
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "class `{n}` is already declared at {} (line {line})",
                    prev.path
                ),
            );
            continue;
        }
        seen.insert(n.to_string(), Loc::of(&f));
        names.insert(n.to_string(), i as ClassId);
    }
    names
}

/// A class name at `f`, or an error naming the known ones.
pub(super) fn class_ref(
    errs: &mut Errors<'_>,
    f: &Field<'_, '_>,
    names: &ClassNames,
) -> Option<ClassId> {
    let n = string(errs, f)?;
    if let Some(id) = names.get(n) {
        return Some(*id);
    }
    let all: Vec<&str> = names.keys().map(String::as_str).collect();
    let msg = match suggest(n, &all) {
        Some(s) => format!("unknown class `{n}`; did you mean `{s}`?"),
        None if all.is_empty() => format!("unknown class `{n}`: no [[class]] is declared"),
        None => {
            let mut sorted = all.clone();
            sorted.sort_unstable();
            format!(
                "unknown class `{n}`; declared classes: {}",
                sorted.join(", ")
            )
        }
    };
    errs.push(&f.span(), &f.path, msg);
    None
}

pub(super) fn class_list(errs: &mut Errors<'_>, f: &Field<'_, '_>, names: &ClassNames) -> ClassSet {
    let mut set = ClassSet::EMPTY;
    let items = match f.value() {
        DeValue::String(_) => {
            return class_ref(errs, f, names)
                .map(ClassSet::one)
                .unwrap_or_default();
        }
        _ => array(errs, f).unwrap_or_default(),
    };
    for it in &items {
        if let Some(id) = class_ref(errs, it, names) {
            set.insert(id);
        }
    }
    set
}

/// A match value: text, or hex bytes when written `0x...` (`"0x00e06f39f988"`).
fn match_bytes(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Vec<u8>> {
    let s = string(errs, f)?;
    let b = if let Some(h) = s.strip_prefix("0x") {
        match parse_hex(h) {
            Ok(b) => b,
            Err(m) => {
                errs.push(&f.span(), &f.path, format!("`{s}` is not hex: {m}"));
                return None;
            }
        }
    } else {
        s.as_bytes().to_vec()
    };
    if b.is_empty() || b.len() > 255 {
        errs.push(
            &f.span(),
            &f.path,
            format!("a match value is 1..=255 bytes, this one is {}", b.len()),
        );
        return None;
    }
    Some(b)
}

fn read_match(errs: &mut Errors<'_>, t: &Table<'_, '_>, names: &ClassNames) -> ClassMatch {
    let mut m = ClassMatch::default();
    let mut exact_vendor: Option<(Vec<u8>, Loc)> = None;
    for (key, kind) in [
        ("vendor-class", 0u8),
        ("vendor-class-prefix", 1),
        ("vendor-class-contains", 2),
    ] {
        if let Some(f) = t.get(key) {
            if let Some(b) = match_bytes(errs, &f) {
                // An exact value must pass the other tests, or the class never matches.
                if let Some((ex, _)) = &exact_vendor {
                    let probe = if kind == 1 {
                        BytesMatch::Prefix(b.clone())
                    } else {
                        BytesMatch::Contains(b.clone())
                    };
                    if !probe.test(ex) {
                        errs.push(
                            &f.span(),
                            &f.path,
                            format!(
                                "this class can never match: `vendor-class` is exactly `{}`, which does not pass `{key}`",
                                String::from_utf8_lossy(ex)
                            ),
                        );
                    }
                }
                m.vendor_class.push(match kind {
                    0 => {
                        exact_vendor = Some((b.clone(), Loc::of(&f)));
                        BytesMatch::Exact(b)
                    }
                    1 => BytesMatch::Prefix(b),
                    _ => BytesMatch::Contains(b),
                });
            }
        }
    }
    for (key, kind) in [
        ("user-class", 0u8),
        ("user-class-prefix", 1),
        ("user-class-contains", 2),
    ] {
        if let Some(f) = t.get(key) {
            if let Some(b) = match_bytes(errs, &f) {
                m.user_class.push(match kind {
                    0 => BytesMatch::Exact(b),
                    1 => BytesMatch::Prefix(b),
                    _ => BytesMatch::Contains(b),
                });
            }
        }
    }
    let sub = |errs: &mut Errors<'_>, key: &str| {
        t.get(key)
            .and_then(|f| match_bytes(errs, &f))
            .map(BytesMatch::Exact)
    };
    m.circuit_id = sub(errs, "circuit-id");
    m.remote_id = sub(errs, "remote-id");
    m.subscriber_id = sub(errs, "subscriber-id");
    if let Some(f) = t.get("remote-id-is-chaddr") {
        m.remote_id_is_chaddr = boolean(errs, &f);
        if let (Some(true), Some(BytesMatch::Exact(r))) = (m.remote_id_is_chaddr, &m.remote_id) {
            if r.len() != 6 {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!(
                        "this class can never match: `remote-id` is {} bytes, a chaddr is 6",
                        r.len()
                    ),
                );
            }
        }
    }
    if let Some(f) = t.get("client-id") {
        m.client_id = string(errs, &f).and_then(|s| match parse_hex(s) {
            Ok(b) if !b.is_empty() && b.len() <= 255 => Some(b),
            Ok(b) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("client-id must be 1..=255 bytes, got {}", b.len()),
                );
                None
            }
            Err(e) => {
                errs.push(&f.span(), &f.path, format!("`{s}` is not hex: {e}"));
                None
            }
        });
    }
    if let Some(f) = t.get("hw-prefix") {
        m.hw_prefix = string(errs, &f).and_then(|s| match parse_hex(s) {
            Ok(b) if (1..=6).contains(&b.len()) => Some(b),
            Ok(b) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!(
                        "a hardware-address prefix is 1..=6 bytes (an OUI is 3), got {}",
                        b.len()
                    ),
                );
                None
            }
            Err(e) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("`{s}` is not a hardware address prefix: {e}"),
                );
                None
            }
        });
    }
    if let Some(f) = t.get("giaddr") {
        let items = match f.value() {
            DeValue::String(_) => vec![f],
            _ => array(errs, &f).unwrap_or_default(),
        };
        for it in &items {
            let Some(s) = string(errs, it) else { continue };
            let parsed = s.parse::<Ipv4Net>().ok().or_else(|| {
                s.parse::<Ipv4Addr>()
                    .ok()
                    .map(|a| Ipv4Net::truncating(a, 32))
            });
            match parsed {
                Some(n) => m.giaddr.push(n),
                None => errs.push(
                    &it.span(),
                    &it.path,
                    format!("`{s}` is not an IPv4 network or address"),
                ),
            }
        }
    }
    if let Some(f) = t.get("group") {
        m.group = class_ref(errs, &f, names);
    }
    if let Some(f) = t.get("enterprise") {
        m.enterprise = u32_in(errs, &f, 0, u32::MAX, "a 32-bit enterprise number");
    }
    if let Some(f) = t.get("known") {
        m.known = boolean(errs, &f);
        if m.known == Some(false) && m.group.is_some() {
            errs.push(
                &f.span(),
                &f.path,
                "this class can never match: a member of a registration `group` is registered (known)",
            );
        }
    }
    m
}

pub(super) fn read_class(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    names: &ClassNames,
) -> Option<Class> {
    let name = t
        .get("name")
        .and_then(|f| string(errs, &f).map(str::to_string));
    let matches = read_match(errs, t, names);
    let settings = read_settings(errs, t);
    let vendor_options6 = super::v6::read_vendor_options(errs, t);
    let name = name?;
    let id = *names.get(&name)?;
    Some(Class {
        id,
        name,
        matches,
        settings,
        vendor_options6,
    })
}

pub(super) fn read_pool_rules(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    names: &ClassNames,
) -> PoolRules {
    let allow = t
        .get("allow")
        .map(|f| class_list(errs, &f, names))
        .unwrap_or_default();
    let deny = match t.get("deny") {
        Some(f) => {
            let d = class_list(errs, &f, names);
            if allow.intersects(d) && (allow.0 & !d.0) == 0 {
                errs.push(
                    &f.span(),
                    &f.path,
                    "this pool can never be used: every class in `allow` is also in `deny`",
                );
            }
            d
        }
        None => ClassSet::EMPTY,
    };
    let deny_unknown = t
        .get("deny-unknown")
        .and_then(|f| boolean(errs, &f))
        .unwrap_or(false);
    PoolRules {
        allow,
        deny,
        deny_unknown,
        settings: read_settings(errs, t),
    }
}

pub(super) fn read_host(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    names: &ClassNames,
) -> Option<(Host, Loc)> {
    let key = super::pools::read_client_key(errs, t, "a host");
    let group = t.get("group").and_then(|f| class_ref(errs, &f, names));
    let (key, loc) = key?;
    Some((Host { key, group }, loc))
}

/// The settings keys of `t` (class, pool or shared network), encoded.
pub(super) fn read_settings(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Settings {
    let mut s = Settings::default();
    let mut set_by: HashMap<u8, String> = HashMap::new();
    for (key, code) in [
        ("router", 3u8),
        ("time-servers", 4),
        ("dns-servers", 6),
        ("log-servers", 7),
        ("ntp-servers", 42),
    ] {
        let Some(f) = t.get(key) else { continue };
        let Some(list) = ipv4_list(errs, &f) else {
            continue;
        };
        if list.len() > MAX_ADDRS_PER_OPTION {
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "{} addresses do not fit in one option (at most {MAX_ADDRS_PER_OPTION})",
                    list.len()
                ),
            );
            continue;
        }
        if list.is_empty() {
            errs.push(&f.span(), &f.path, "address list is empty");
            continue;
        }
        let bytes: Vec<u8> = list.iter().flat_map(|a| a.octets()).collect();
        put(errs, &mut s.options, code, &bytes, &Loc::of(&f));
        set_by.insert(code, key.into());
    }
    if let Some(f) = t.get("domain-name") {
        if let Some(d) = string(errs, &f) {
            match check_domain(d) {
                Ok(()) => {
                    put(errs, &mut s.options, 15, d.as_bytes(), &Loc::of(&f));
                    set_by.insert(15, "domain-name".into());
                }
                Err(m) => errs.push(&f.span(), &f.path, m),
            }
        }
    }
    if let Some(f) = t.get("time-offset") {
        if let Some(v) = int_in(
            errs,
            &f,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            "a signed 32-bit number of seconds",
        ) {
            put(
                errs,
                &mut s.options,
                2,
                &(v as i32).to_be_bytes(),
                &Loc::of(&f),
            );
            set_by.insert(2, "time-offset".into());
        }
    }
    if let Some(f) = t.get("tftp-server") {
        if let Some(v) = text_value(errs, &f, 255) {
            put(errs, &mut s.options, 66, v.as_bytes(), &Loc::of(&f));
            set_by.insert(66, "tftp-server".into());
        }
    }
    if let Some(f) = t.get("boot-file") {
        if let Some(v) = text_value(errs, &f, MAX_BOOT_FILE) {
            put(errs, &mut s.options, 67, v.as_bytes(), &Loc::of(&f));
            set_by.insert(67, "boot-file".into());
            s.boot_file = Some(v.to_string());
        }
    }
    s.next_server = t.get("next-server").and_then(|f| ipv4(errs, &f));
    if let Some(f) = t.get("host-name-from-mac") {
        match f.value() {
            DeValue::Boolean(true) => s.host_name_from_mac = Some(String::new()),
            DeValue::Boolean(false) => {}
            DeValue::String(_) => {
                if let Some(p) = string(errs, &f) {
                    // 12 hex digits follow; option 12 is at most 255 bytes, a DNS label 63.
                    if p.len() > 51 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        errs.push(
                            &f.span(),
                            &f.path,
                            "a host-name prefix is at most 51 letters, digits or `-` (one DNS label with the 12 hex digits)",
                        );
                    } else {
                        s.host_name_from_mac = Some(p.to_string());
                    }
                }
            }
            _ => errs.push(
                &f.span(),
                &f.path,
                "expected true, false or a prefix string",
            ),
        }
    }
    let secs = |errs: &mut Errors<'_>, key: &str| {
        t.get(key)
            .and_then(|f| u32_in(errs, &f, 1, MAX_TIME, "between 1 and 2147483647 seconds"))
    };
    s.times = TimeOverride {
        default: secs(errs, "default-time"),
        min: secs(errs, "min-time"),
        max: secs(errs, "max-time"),
    };
    if let (Some(lo), Some(hi)) = (s.times.min, s.times.max) {
        if lo > hi {
            if let Some(f) = t.get("min-time") {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("min-time {lo} is above max-time {hi}"),
                );
            }
        }
    }
    if let Some(f) = t.get("options") {
        for ot in tables(errs, &f, OPTION_KEYS) {
            read_generic_option(errs, &ot, &mut s.options, &mut set_by);
        }
    }
    for (key, code) in [
        ("option-43", 43u8),
        ("option-122", 122),
        ("option-125", 125),
    ] {
        let Some(f) = t.get(key) else { continue };
        if let Some(by) = set_by.get(&code) {
            errs.push(
                &f.span(),
                &f.path,
                format!("option {code} is already set by `{by}`"),
            );
            continue;
        }
        let allowed = if code == 125 { SUB125_KEYS } else { SUB_KEYS };
        let subs = tables(errs, &f, allowed);
        if subs.is_empty() {
            continue;
        }
        if let Some(bytes) = encode_vendor(errs, code, &subs) {
            if bytes.len() > 255 {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!(
                        "option {code} encodes to {} bytes; the limit is 255",
                        bytes.len()
                    ),
                );
            } else {
                put(errs, &mut s.options, code, &bytes, &Loc::of(&f));
                set_by.insert(code, key.into());
            }
        }
    }
    s.seal();
    s
}

/// RFC 1035 wire form of a domain name (labels, terminating zero).
fn fqdn_wire(name: &str) -> Result<Vec<u8>, String> {
    check_domain(name)?;
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.strip_suffix('.').unwrap_or(name).split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(out)
}

/// What a sub-option's value must be (RFC 3495 for option 122; anything for 43 and 125).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubType {
    Any,
    /// Exactly one IPv4 address.
    OneIp,
    /// RFC 3495 §3.3: an address (type 1) or an FQDN (type 0).
    IpOrFqdn,
    /// An FQDN in wire form.
    Fqdn,
    U8,
    U16,
    /// Three u32s (RFC 3495 §3.4/3.5 back-off parameters), given as `hex` (12 bytes).
    Hex12,
}

fn sub_type(space: u8, code: u8) -> (SubType, &'static str) {
    if space != 122 {
        return (SubType::Any, "");
    }
    match code {
        1 => (SubType::OneIp, "TSP's primary DHCP server address"),
        2 => (SubType::OneIp, "TSP's secondary DHCP server address"),
        3 => (SubType::IpOrFqdn, "TSP's provisioning server address"),
        4 => (SubType::Hex12, "TSP's AS-REQ/AS-REP backoff and retry"),
        5 => (SubType::Hex12, "TSP's AP-REQ/AP-REP backoff and retry"),
        6 => (SubType::Fqdn, "TSP's Kerberos realm name"),
        7 => (SubType::U8, "TSP's ticket granting server utilization"),
        8 => (SubType::U8, "TSP's provisioning timer"),
        9 => (SubType::U16, "TSP's security ticket control"),
        _ => (SubType::Any, ""),
    }
}

/// Encodes vendor sub-options: 43 and 122 as `code len value...`; 125 (RFC 3925) grouped
/// by enterprise number: `enterprise(4) data-len(1) sub-options...` per enterprise.
fn encode_vendor(errs: &mut Errors<'_>, space: u8, subs: &[Table<'_, '_>]) -> Option<Vec<u8>> {
    let mut ok = true;
    // (enterprise, code, value), file order.
    let mut items: Vec<(u32, u8, Vec<u8>)> = Vec::new();
    let mut seen: HashMap<(u32, u8), Loc> = HashMap::new();
    for st in subs {
        let enterprise = if space == 125 {
            match st.require(errs, "enterprise").and_then(|f| {
                u32_in(
                    errs,
                    &f,
                    0,
                    u32::MAX,
                    "an IANA enterprise number (0..=4294967295)",
                )
            }) {
                Some(e) => e,
                None => {
                    ok = false;
                    continue;
                }
            }
        } else {
            0
        };
        let Some(cf) = st.require(errs, "code") else {
            ok = false;
            continue;
        };
        let Some(code) =
            u32_in(errs, &cf, 1, 254, "between 1 and 254").and_then(|c| u8::try_from(c).ok())
        else {
            ok = false;
            continue;
        };
        if let Some(prev) = seen.get(&(enterprise, code)) {
            let line = errs.position(prev.span.start).line;
            errs.push(
                &cf.span(),
                &cf.path,
                format!(
                    "sub-option {code} of option {space} is already given at {} (line {line})",
                    prev.path
                ),
            );
            ok = false;
            continue;
        }
        seen.insert((enterprise, code), Loc::of(&cf));
        let kinds: Vec<(&str, Field<'_, '_>)> = SUB_KINDS
            .iter()
            .filter_map(|k| st.get(k).map(|f| (*k, f)))
            .collect();
        let (kind, f) = match kinds.as_slice() {
            [(k, f)] => (*k, f),
            [] => {
                errs.push(
                    &st.span,
                    &st.path,
                    format!(
                        "a sub-option needs exactly one of: {}",
                        SUB_KINDS.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
            [_, (_, second), ..] => {
                errs.push(
                    &second.span(),
                    &second.path,
                    format!(
                        "a sub-option takes exactly one of: {}",
                        SUB_KINDS.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
        };
        let (want, what) = sub_type(space, code);
        let fits = match want {
            SubType::Any => true,
            SubType::OneIp => kind == "ip" && matches!(f.value(), DeValue::String(_)),
            SubType::IpOrFqdn => kind == "ip" || kind == "fqdn",
            SubType::Fqdn => kind == "fqdn",
            SubType::U8 => kind == "u8",
            SubType::U16 => kind == "u16",
            SubType::Hex12 => kind == "hex",
        };
        if !fits {
            let need = match want {
                SubType::OneIp => "`ip` with one address",
                SubType::IpOrFqdn => "`ip` (one address) or `fqdn`",
                SubType::Fqdn => "`fqdn`",
                SubType::U8 => "`u8`",
                SubType::U16 => "`u16`",
                SubType::Hex12 => "`hex` (three 32-bit numbers, 12 bytes)",
                SubType::Any => "",
            };
            errs.push(
                &f.span(),
                &f.path,
                format!("option {space} sub-option {code} ({what}) does not fit `{kind}`: it takes {need}"),
            );
            ok = false;
            continue;
        }
        let value: Option<Vec<u8>> = match kind {
            "hex" => string(errs, f).and_then(|s| match parse_hex(s) {
                Ok(b) => Some(b),
                Err(m) => {
                    errs.push(&f.span(), &f.path, format!("`{s}` is not hex: {m}"));
                    None
                }
            }),
            "text" => text_value(errs, f, 255).map(|s| s.as_bytes().to_vec()),
            "fqdn" => string(errs, f).and_then(|s| match fqdn_wire(s) {
                Ok(b) => Some(b),
                Err(m) => {
                    errs.push(&f.span(), &f.path, m);
                    None
                }
            }),
            "ip" => {
                let list = match f.value() {
                    DeValue::String(_) => ipv4(errs, f).map(|a| vec![a]),
                    _ => ipv4_list(errs, f),
                };
                match list {
                    Some(l) if l.is_empty() => {
                        errs.push(&f.span(), &f.path, "address list is empty");
                        None
                    }
                    other => other.map(|l| l.iter().flat_map(|a| a.octets()).collect()),
                }
            }
            "u8" => int_in(errs, f, 0, 0xff, "0..=255").map(|v| vec![v as u8]),
            "u16" => {
                int_in(errs, f, 0, 0xffff, "0..=65535").map(|v| (v as u16).to_be_bytes().to_vec())
            }
            "u32" => int_in(errs, f, 0, i64::from(u32::MAX), "0..=4294967295")
                .map(|v| (v as u32).to_be_bytes().to_vec()),
            _ => None,
        };
        let Some(mut value) = value else {
            ok = false;
            continue;
        };
        if want == SubType::Hex12 && value.len() != 12 {
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "option {space} sub-option {code} ({what}) is 12 bytes, got {}",
                    value.len()
                ),
            );
            ok = false;
            continue;
        }
        if want == SubType::IpOrFqdn {
            // RFC 3495 §3.3: type 0 = FQDN, type 1 = IPv4 address.
            value.insert(0, if kind == "ip" { 1 } else { 0 });
        }
        if value.len() > 255 {
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "sub-option value is {} bytes; the limit is 255",
                    value.len()
                ),
            );
            ok = false;
            continue;
        }
        items.push((enterprise, code, value));
    }
    if !ok {
        return None;
    }
    let tlvs = |list: &[&(u32, u8, Vec<u8>)]| -> Vec<u8> {
        let mut b = Vec::new();
        for (_, c, v) in list {
            b.push(*c);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b
    };
    if space != 125 {
        let all: Vec<&(u32, u8, Vec<u8>)> = items.iter().collect();
        return Some(tlvs(&all));
    }
    let mut out = Vec::new();
    let mut enterprises: Vec<u32> = Vec::new();
    for (e, _, _) in &items {
        if !enterprises.contains(e) {
            enterprises.push(*e);
        }
    }
    for e in enterprises {
        let of_e: Vec<&(u32, u8, Vec<u8>)> = items.iter().filter(|(x, _, _)| *x == e).collect();
        let data = tlvs(&of_e);
        out.extend_from_slice(&e.to_be_bytes());
        // Over 255 is reported by the caller through the whole option's length.
        out.push(data.len().min(255) as u8);
        out.extend_from_slice(&data);
    }
    Some(out)
}
