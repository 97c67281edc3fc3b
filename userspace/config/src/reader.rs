//! Typed, position-aware access to a parsed TOML document.
//!
//! The document is walked by hand (not through `#[derive(Deserialize)]`) so that
//! every problem is recorded with its span and field path and the walk goes on:
//! one run reports all errors, not only the first.

use std::net::Ipv4Addr;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{suggest, Errors};
use super::schema::ROOT_KEYS;

pub(crate) type Span = Range<usize>;

/// A value together with its dotted path (`subnet[0].pool[1].range`).
pub(crate) struct Field<'a, 'i> {
    pub v: &'a Spanned<DeValue<'i>>,
    pub path: String,
}

impl<'a, 'i> Field<'a, 'i> {
    pub fn span(&self) -> Span {
        self.v.span()
    }

    pub fn value(&self) -> &'a DeValue<'i> {
        self.v.get_ref()
    }
}

/// A table whose unknown keys have already been reported.
pub(crate) struct Table<'a, 'i> {
    pub t: &'a DeTable<'i>,
    /// Span of the header (`[server]`, `[[subnet]]`, `{ ... }`).
    pub span: Span,
    pub path: String,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> Table<'a, 'i> {
    /// The document root.
    pub fn root(errs: &mut Errors<'_>, t: &'a DeTable<'i>, allowed: &[&str]) -> Self {
        let tbl = Table {
            t,
            span: 0..0,
            path: String::new(),
        };
        tbl.check_keys(errs, allowed);
        tbl
    }

    /// Opens `f` as a table and reports keys not in `allowed`.
    pub fn open(errs: &mut Errors<'_>, f: &Field<'a, 'i>, allowed: &[&str]) -> Option<Self> {
        match f.value() {
            DeValue::Table(t) => {
                let tbl = Table {
                    t,
                    span: f.span(),
                    path: f.path.clone(),
                };
                tbl.check_keys(errs, allowed);
                Some(tbl)
            }
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn check_keys(&self, errs: &mut Errors<'_>, allowed: &[&str]) {
        for (k, _) in self.t.iter() {
            let key: &str = k.get_ref();
            if allowed.contains(&key) {
                continue;
            }
            let path = join(&self.path, key);
            let msg = match suggest(key, allowed) {
                Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
                // A classic: `subnet = ...` written below `[server]` lands in it.
                None if !self.path.is_empty() && ROOT_KEYS.contains(&key) => format!(
                    "unknown key `{key}` (keys after the [{}] header belong to it; move it above)",
                    self.path
                ),
                None => format!(
                    "unknown key `{key}`; expected one of: {}",
                    allowed.join(", ")
                ),
            };
            errs.push(&k.span(), &path, msg);
        }
    }

    pub fn get(&self, key: &str) -> Option<Field<'a, 'i>> {
        self.t.get(key).map(|v| Field {
            v,
            path: join(&self.path, key),
        })
    }

    /// Like `get`, but a missing key is an error reported at the table header.
    pub fn require(&self, errs: &mut Errors<'_>, key: &str) -> Option<Field<'a, 'i>> {
        let f = self.get(key);
        if f.is_none() {
            let what = if self.path.is_empty() {
                "the file".to_string()
            } else {
                format!("`{}`", self.path)
            };
            errs.push(
                &self.span,
                &self.path,
                format!("missing required key `{key}` in {what}"),
            );
        }
        f
    }
}

// ---- scalar conversions: each records an error and returns None on failure ----

pub(crate) fn string<'a>(errs: &mut Errors<'_>, f: &Field<'a, '_>) -> Option<&'a str> {
    match f.value() {
        DeValue::String(s) => Some(s.as_ref()),
        other => {
            errs.push(
                &f.span(),
                &f.path,
                format!("expected a string, found {}", type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn integer(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<i64> {
    match f.value() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                errs.push(&f.span(), &f.path, format!("integer {i} is out of range"));
                None
            }
        },
        other => {
            errs.push(
                &f.span(),
                &f.path,
                format!("expected an integer, found {}", type_name(other)),
            );
            None
        }
    }
}

/// An integer in `lo..=hi`; `what` completes "must be ..." in the error.
pub(crate) fn int_in(
    errs: &mut Errors<'_>,
    f: &Field<'_, '_>,
    lo: i64,
    hi: i64,
    what: &str,
) -> Option<i64> {
    let n = integer(errs, f)?;
    if n < lo || n > hi {
        errs.push(
            &f.span(),
            &f.path,
            format!("{n} is out of range: must be {what}"),
        );
        return None;
    }
    Some(n)
}

pub(crate) fn u32_in(
    errs: &mut Errors<'_>,
    f: &Field<'_, '_>,
    lo: u32,
    hi: u32,
    what: &str,
) -> Option<u32> {
    int_in(errs, f, i64::from(lo), i64::from(hi), what).and_then(|n| u32::try_from(n).ok())
}

/// A float; integers are accepted too (`factor = 1` is a number, just a bad one).
pub(crate) fn number(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<f64> {
    match f.value() {
        DeValue::Float(x) => match x.as_str().replace('_', "").parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                errs.push(&f.span(), &f.path, format!("{x} is not a finite number"));
                None
            }
        },
        // i64 -> f64 may round, which is harmless for factors.
        DeValue::Integer(_) => integer(errs, f).map(|n| n as f64),
        other => {
            errs.push(
                &f.span(),
                &f.path,
                format!("expected a number, found {}", type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn boolean(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<bool> {
    match f.value() {
        DeValue::Boolean(b) => Some(*b),
        other => {
            errs.push(
                &f.span(),
                &f.path,
                format!("expected true or false, found {}", type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    s.trim().parse().ok()
}

pub(crate) fn ipv4(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Ipv4Addr> {
    let s = string(errs, f)?;
    let ip = parse_ipv4(s);
    if ip.is_none() {
        errs.push(&f.span(), &f.path, format!("{s} is not an IPv4 address"));
    }
    ip
}

/// The elements of an array, each with its indexed path.
pub(crate) fn array<'a, 'i>(
    errs: &mut Errors<'_>,
    f: &Field<'a, 'i>,
) -> Option<Vec<Field<'a, 'i>>> {
    match f.value() {
        DeValue::Array(a) => Some(
            a.iter()
                .enumerate()
                .map(|(i, v)| Field {
                    v,
                    path: format!("{}[{i}]", f.path),
                })
                .collect(),
        ),
        other => {
            errs.push(
                &f.span(),
                &f.path,
                format!("expected an array, found {}", type_name(other)),
            );
            None
        }
    }
}

/// A list of IPv4 addresses; `None` if the field or any element is bad (all reported).
pub(crate) fn ipv4_list(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Vec<Ipv4Addr>> {
    let items = array(errs, f)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for it in &items {
        match ipv4(errs, it) {
            Some(ip) => out.push(ip),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An array of tables (`[[subnet]]` or an inline array of `{ ... }`).
pub(crate) fn tables<'a, 'i>(
    errs: &mut Errors<'_>,
    f: &Field<'a, 'i>,
    allowed: &[&str],
) -> Vec<Table<'a, 'i>> {
    if let DeValue::Table(_) = f.value() {
        // `subnet[0].pool` is written `[[subnet.pool]]` in the file.
        let name: String = f
            .path
            .split('.')
            .map(|seg| seg.split('[').next().unwrap_or(seg))
            .collect::<Vec<_>>()
            .join(".");
        errs.push(
            &f.span(),
            &f.path,
            format!("expected an array of tables: write [[{name}]], not [{name}]"),
        );
        return Vec::new();
    }
    let Some(items) = array(errs, f) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|it| Table::open(errs, it, allowed))
        .collect()
}

/// Hex bytes such as `01020304`, `01:02:03:04` or `01 02 03 04`.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let separated = s.contains([':', '-', ' ']);
    let digits: Vec<u8> = if separated {
        let mut v = Vec::new();
        for part in s.split([':', '-', ' ']).filter(|p| !p.is_empty()) {
            if part.len() > 2 {
                return Err(format!("`{part}` is not a hex byte"));
            }
            // "1" in "1:2:3" means 0x01.
            if part.len() == 1 {
                v.push(b'0');
            }
            v.extend_from_slice(part.as_bytes());
        }
        v
    } else {
        s.as_bytes().to_vec()
    };
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".to_string());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hex = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(hex, 16).map_err(|_| format!("`{hex}` is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("01020304"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_hex("aa:BB:c:0d"), Ok(vec![0xaa, 0xbb, 0x0c, 0x0d]));
        assert_eq!(parse_hex("0x01ff"), Ok(vec![1, 0xff]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert!(parse_hex("123").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("123:4").is_err());
    }
}
