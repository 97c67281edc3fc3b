//! Bulk import formats: CSV with a header row, and JSON Lines (one registration object a
//! line, the form [`crate::record::Json`] describes). Errors are positioned:
//! `file:line: field: message`; every bad line is reported (up to [`MAX_ERRORS`]), and
//! nothing is imported when any line is bad.
//!
//! CSV columns (header names, any order, unknown names refused): `mac`, `client-id`,
//! `group`, `fixed-address`, `host-name`, `next-server`, `boot-file`, `options`
//! (`CODE=HEX` pairs separated by `;` or spaces). An empty cell is an absent field. Fields
//! may be double-quoted (`""` is a quote). Empty lines and lines starting with `#` are
//! skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::record::{Json, Registration};

/// At most this many errors are collected before giving up.
pub const MAX_ERRORS: usize = 100;

/// A bulk file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// From a file name: `.csv` is CSV, everything else JSON Lines.
    pub fn from_path(p: &str) -> Format {
        if p.to_ascii_lowercase().ends_with(".csv") {
            Format::Csv
        } else {
            Format::JsonLines
        }
    }
}

/// One bad line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// 1-based line.
    pub line: usize,
    /// Field name (`-` for the whole line).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// All bad lines of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportErrors {
    /// The file's name as given.
    pub file: String,
    /// In line order.
    pub errors: Vec<ImportError>,
}

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}: {}", self.file, e.line, e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportErrors {}

const CSV_COLUMNS: &[&str] = &[
    "mac",
    "client-id",
    "group",
    "fixed-address",
    "host-name",
    "next-server",
    "boot-file",
    "options",
];

/// Parses a whole bulk file. `file` only names it in errors. Two lines registering the same
/// MAC or client id, or the same fixed address, are errors too.
pub fn parse(file: &str, text: &str, format: Format) -> Result<Vec<Registration>, ImportErrors> {
    let mut errs = Vec::new();
    let mut out: Vec<(usize, Registration)> = Vec::new();
    match format {
        Format::JsonLines => parse_jsonl(text, &mut out, &mut errs),
        Format::Csv => parse_csv(text, &mut out, &mut errs),
    }
    // Duplicates inside the file.
    let mut keys = HashMap::new();
    let mut addrs = HashMap::new();
    for (line, r) in &out {
        if errs.len() >= MAX_ERRORS {
            break;
        }
        for k in r.keys() {
            if let Some(first) = keys.insert(k, *line) {
                let field = if r.client_id.is_some() && Some(k) == r.keys().next() {
                    "client-id"
                } else {
                    "mac"
                };
                errs.push(ImportError {
                    line: *line,
                    field: field.into(),
                    message: format!("registered already on line {first}"),
                });
            }
        }
        if let Some(a) = r.fixed_address {
            if let Some(first) = addrs.insert(a, *line) {
                errs.push(ImportError {
                    line: *line,
                    field: "fixed-address".into(),
                    message: format!("{a} is fixed for the registration on line {first}"),
                });
            }
        }
    }
    if errs.is_empty() {
        Ok(out.into_iter().map(|(_, r)| r).collect())
    } else {
        errs.sort_by_key(|e| e.line);
        errs.truncate(MAX_ERRORS);
        Err(ImportErrors {
            file: file.to_string(),
            errors: errs,
        })
    }
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

fn parse_jsonl(text: &str, out: &mut Vec<(usize, Registration)>, errs: &mut Vec<ImportError>) {
    for (n, l) in lines(text) {
        if errs.len() >= MAX_ERRORS {
            return;
        }
        match serde_json::from_str::<Json>(l) {
            Ok(j) => match Registration::from_json(&j) {
                Ok(r) => out.push((n, r)),
                Err(e) => errs.push(ImportError {
                    line: n,
                    field: e.field,
                    message: e.message,
                }),
            },
            Err(e) => errs.push(ImportError {
                line: n,
                field: json_field(&e.to_string()),
                message: e.to_string(),
            }),
        }
    }
}

/// The field serde names in its message (`missing field `group``, `unknown field `x``).
fn json_field(msg: &str) -> String {
    msg.split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && msg.contains("field"))
        .unwrap_or("-")
        .to_string()
}

fn parse_csv(text: &str, out: &mut Vec<(usize, Registration)>, errs: &mut Vec<ImportError>) {
    let mut it = lines(text);
    let Some((hn, header)) = it.next() else {
        return;
    };
    let cols = match split_csv(header) {
        Ok(c) => c,
        Err(m) => {
            errs.push(ImportError {
                line: hn,
                field: "-".into(),
                message: m,
            });
            return;
        }
    };
    let mut seen = Vec::new();
    for c in &cols {
        let c = c.trim();
        if !CSV_COLUMNS.contains(&c) {
            errs.push(ImportError {
                line: hn,
                field: c.to_string(),
                message: format!("unknown column (known: {})", CSV_COLUMNS.join(", ")),
            });
        } else if seen.contains(&c) {
            errs.push(ImportError {
                line: hn,
                field: c.to_string(),
                message: "column given twice".into(),
            });
        }
        seen.push(c);
    }
    if !seen.contains(&"group") {
        errs.push(ImportError {
            line: hn,
            field: "group".into(),
            message: "the header has no group column".into(),
        });
    }
    if !errs.is_empty() {
        return;
    }
    for (n, l) in it {
        if errs.len() >= MAX_ERRORS {
            return;
        }
        let cells = match split_csv(l) {
            Ok(c) => c,
            Err(m) => {
                errs.push(ImportError {
                    line: n,
                    field: "-".into(),
                    message: m,
                });
                continue;
            }
        };
        if cells.len() != seen.len() {
            errs.push(ImportError {
                line: n,
                field: "-".into(),
                message: format!("{} fields, the header has {}", cells.len(), seen.len()),
            });
            continue;
        }
        let mut j = Json::default();
        let mut bad = None;
        for (&col, cell) in seen.iter().zip(cells) {
            let v = cell.trim();
            if v.is_empty() {
                continue;
            }
            let v = v.to_string();
            match col {
                "mac" => j.mac = Some(v),
                "client-id" => j.client_id = Some(v),
                "group" => j.group = v,
                "fixed-address" => j.fixed_address = Some(v),
                "host-name" => j.host_name = Some(v),
                "next-server" => j.next_server = Some(v),
                "boot-file" => j.boot_file = Some(v),
                _ => match parse_option_list(&v) {
                    Ok(o) => j.options = o,
                    Err(m) => bad = Some(("options".to_string(), m)),
                },
            }
        }
        if let Some((field, message)) = bad {
            errs.push(ImportError {
                line: n,
                field,
                message,
            });
            continue;
        }
        match Registration::from_json(&j) {
            Ok(r) => out.push((n, r)),
            Err(e) => errs.push(ImportError {
                line: n,
                field: e.field,
                message: e.message,
            }),
        }
    }
}

/// `CODE=HEX` pairs separated by `;` or whitespace.
fn parse_option_list(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for p in s.split(|c: char| c == ';' || c.is_whitespace()) {
        if p.is_empty() {
            continue;
        }
        let Some((c, v)) = p.split_once('=') else {
            return Err(format!("{p:?} is not CODE=HEX"));
        };
        m.insert(c.to_string(), v.to_string());
    }
    Ok(m)
}

/// Splits one CSV line (RFC 4180 quoting within the line).
fn split_csv(l: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = l.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("stray quote inside a field".into()),
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out)
}

/// The CSV export of `regs` (same columns as the import).
pub fn to_csv(regs: &[Registration]) -> String {
    let mut s = CSV_COLUMNS.join(",");
    s.push('\n');
    for r in regs {
        let j = r.to_json();
        let opts: Vec<String> = j.options.iter().map(|(c, v)| format!("{c}={v}")).collect();
        let cells = [
            j.mac.unwrap_or_default(),
            j.client_id.unwrap_or_default(),
            j.group,
            j.fixed_address.unwrap_or_default(),
            j.host_name.unwrap_or_default(),
            j.next_server.unwrap_or_default(),
            j.boot_file.map(|b| csv_quote(&b)).unwrap_or_default(),
            opts.join(";"),
        ];
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The JSON Lines export of `regs`.
pub fn to_jsonl(regs: &[Registration]) -> String {
    let mut s = String::new();
    for r in regs {
        // A Json of strings always serializes.
        if let Ok(l) = serde_json::to_string(&r.to_json()) {
            s.push_str(&l);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_import_csv_reads_every_column() {
        let text = "# stock-in\nmac,group,fixed-address,host-name,boot-file,options\n\
                    00:11:22:33:44:55,modem,10.0.0.5,cm-1,\"d,1.cfg\",4=0a000001;2=00000e10\n\
                    \n00:11:22:33:44:56,cpe,,,,\n";
        let r = parse("s.csv", text, Format::Csv).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].boot_file.as_deref(), Some("d,1.cfg"));
        assert_eq!(r[0].options.get(&2), Some(&vec![0, 0, 0x0e, 0x10]));
        assert_eq!(r[1].group, "cpe");
        assert_eq!(r[1].fixed_address, None);
        // And back.
        let again = parse("e.csv", &to_csv(&r), Format::Csv).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn registration_import_errors_are_positioned() {
        let text = "mac,group,fixed-address\n\
                    00:11:22:33:44:55,modem,10.0.0.5\n\
                    00:11:22:33:44:zz,modem,\n\
                    00:11:22:33:44:57,,\n\
                    00:11:22:33:44:58,modem,10.0.0.500\n\
                    00:11:22:33:44:59,modem\n\
                    00:11:22:33:44:55,cpe,\n\
                    00:11:22:33:44:60,cpe,10.0.0.5\n";
        let e = parse("bulk.csv", text, Format::Csv).unwrap_err();
        let s = e.to_string();
        let want = [
            "bulk.csv:3: mac: ",
            "bulk.csv:4: group: ",
            "bulk.csv:5: fixed-address: ",
            "bulk.csv:6: -: 2 fields, the header has 3",
            "bulk.csv:7: mac: registered already on line 2",
            "bulk.csv:8: fixed-address: 10.0.0.5 is fixed for the registration on line 2",
        ];
        let got: Vec<&str> = s.lines().collect();
        assert_eq!(got.len(), want.len(), "{s}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.starts_with(w), "{g:?} should start with {w:?}");
        }
    }

    #[test]
    fn registration_import_csv_header_errors() {
        let e = parse("h.csv", "mac,colour\n", Format::Csv).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("h.csv:1: colour: unknown column"), "{s}");
        assert!(
            s.contains("h.csv:1: group: the header has no group column"),
            "{s}"
        );
        let e = parse("q.csv", "mac,group\n\"00:11,modem\n", Format::Csv).unwrap_err();
        assert!(e.to_string().starts_with("q.csv:2: -: unterminated"), "{e}");
    }

    #[test]
    fn registration_import_jsonl_errors_are_positioned() {
        let text = "{\"mac\":\"00:11:22:33:44:55\",\"group\":\"modem\"}\n\
                    {\"mac\":\"00:11:22:33:44:56\"}\n\
                    {\"mac\":\"00:11:22:33:44:57\",\"group\":\"m\",\"colour\":1}\n\
                    {\"client-id\":\"01zz\",\"group\":\"m\"}\n\
                    {\"mac\":\"00:11:22:33:44:58\",\"group\":\"m\",\"options\":{\"300\":\"00\"}}\n\
                    not json\n";
        let e = parse("b.jsonl", text, Format::JsonLines).unwrap_err();
        let got: Vec<String> = e.to_string().lines().map(String::from).collect();
        assert_eq!(got.len(), 5, "{e}");
        assert!(
            got[0].starts_with("b.jsonl:2: group: missing field"),
            "{}",
            got[0]
        );
        assert!(
            got[1].starts_with("b.jsonl:3: colour: unknown field"),
            "{}",
            got[1]
        );
        assert!(got[2].starts_with("b.jsonl:4: client-id: "), "{}", got[2]);
        assert!(got[3].starts_with("b.jsonl:5: options.300: "), "{}", got[3]);
        assert!(got[4].starts_with("b.jsonl:6: -: "), "{}", got[4]);
    }

    #[test]
    fn registration_import_jsonl_round_trips() {
        let text =
            "{\"mac\":\"00:11:22:33:44:55\",\"group\":\"modem\",\"fixed-address\":\"10.0.0.5\"}\n\
                    {\"client-id\":\"01aabb\",\"group\":\"cpe\",\"host-name\":\"h1\"}\n";
        let r = parse("a.jsonl", text, Format::JsonLines).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(parse("b", &to_jsonl(&r), Format::JsonLines).unwrap(), r);
    }
}
