//! Reader for ISC dhcpd's `dhcpd.leases` (dhcpd.leases(5), DHCPv4 part).
//!
//! The file is a log: every change appends a complete `lease A { ... }`
//! declaration, so the last declaration of an address wins, as in dhcpd.
//! Statements this importer has no use for (`set`, `on ... { }`, `option`,
//! `failover peer ... state { }`, `host`, `server-duid`, DHCPv6 `ia-na`, ...)
//! are skipped as whole statements or balanced blocks. Everything it does
//! interpret (dates, states, hardware, uid) is checked, and a problem is an
//! error naming file:line:column and what was expected.
//!
//! State mapping (ISC binding state -> xdhcpd):
//! active/bootp -> Active (Reserved with the `reserved;` flag); expired ->
//! Expired; released -> Released; free/reset -> Released when the record
//! still names a client (dhcpd writes released leases as `free` and gives the
//! address back to the same client first, as xdhcpd does with Released),
//! else Free; abandoned -> Abandoned; backup -> Backup (owned by the failover
//! secondary); reserved -> Reserved.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lease_store::{LeaseState, Owner};
use xdhcpd_failover::BindingStatus;

use super::model::{parse_colon_hex, ParseError, SourceLease};
use super::time::{days_from_civil, days_in_month};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(Vec<u8>),
    LBrace,
    RBrace,
    Semi,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string \"{}\"", String::from_utf8_lossy(s)),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Semi => "`;`".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pos {
    line: usize,
    col: usize,
}

struct Lexer<'a> {
    src: &'a [u8],
    i: usize,
    line: usize,
    col: usize,
    file: &'a str,
}

fn is_word_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'{' | b'}' | b';' | b'"' | b'#'))
}

impl<'a> Lexer<'a> {
    fn err(&self, p: Pos, msg: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: p.line,
            col: p.col,
            msg: msg.into(),
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let b = *self.src.get(self.i)?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(b)
    }

    fn next(&mut self) -> Result<(Tok, Pos), ParseError> {
        self.lex()
    }

    fn lex(&mut self) -> Result<(Tok, Pos), ParseError> {
        loop {
            match self.src.get(self.i) {
                Some(b) if b.is_ascii_whitespace() => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(b) = self.src.get(self.i) {
                        if *b == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let pos = Pos {
            line: self.line,
            col: self.col,
        };
        let Some(b) = self.bump() else {
            return Ok((Tok::Eof, pos));
        };
        let tok = match b {
            b'{' => Tok::LBrace,
            b'}' => Tok::RBrace,
            b';' => Tok::Semi,
            b'"' => Tok::Str(self.string(pos)?),
            _ => {
                let start = self.i - 1;
                while self.src.get(self.i).is_some_and(|&b| is_word_byte(b)) {
                    self.bump();
                }
                Tok::Word(String::from_utf8_lossy(&self.src[start..self.i]).into_owned())
            }
        };
        Ok((tok, pos))
    }

    /// A quoted string after its opening quote; `\ooo` octal and `\x`
    /// escapes as dhcpd writes them.
    fn string(&mut self, start: Pos) -> Result<Vec<u8>, ParseError> {
        let mut out = Vec::new();
        loop {
            let here = Pos {
                line: self.line,
                col: self.col,
            };
            match self.bump() {
                None => {
                    return Err(self.err(
                        start,
                        "unterminated string: end of file before the closing `\"`",
                    ))
                }
                Some(b'"') => return Ok(out),
                Some(b'\\') => match self.bump() {
                    Some(d @ b'0'..=b'7') => {
                        let mut v = u32::from(d - b'0');
                        for _ in 0..2 {
                            match self.src.get(self.i) {
                                Some(&d @ b'0'..=b'7') => {
                                    self.bump();
                                    v = v * 8 + u32::from(d - b'0');
                                }
                                _ => break,
                            }
                        }
                        let v = u8::try_from(v).map_err(|_| {
                            self.err(here, format!("octal escape \\{v:o} is larger than 255"))
                        })?;
                        out.push(v);
                    }
                    Some(b'n') => out.push(b'\n'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'r') => out.push(b'\r'),
                    Some(c) => out.push(c),
                    None => {
                        return Err(self.err(
                            start,
                            "unterminated string: end of file before the closing `\"`",
                        ))
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }
}

/// The leases of an ISC file (last declaration per address), by address.
#[derive(Debug, Default)]
pub struct IscFile {
    pub leases: BTreeMap<Ipv4Addr, SourceLease>,
    /// `lease` declarations read (including ones overridden later).
    pub declarations: usize,
}

/// An ISC `binding state`: dhcpd's states are the failover binding
/// statuses (draft-12 section 12.3, free to backup) and two of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IscState {
    Binding(BindingStatus),
    Reserved,
    Bootp,
}

fn isc_state(w: &str) -> Option<IscState> {
    Some(match w {
        "reserved" => IscState::Reserved,
        "bootp" => IscState::Bootp,
        _ => IscState::Binding(match w {
            "free" => BindingStatus::Free,
            "active" => BindingStatus::Active,
            "expired" => BindingStatus::Expired,
            "released" => BindingStatus::Released,
            "abandoned" => BindingStatus::Abandoned,
            "reset" => BindingStatus::Reset,
            "backup" => BindingStatus::Backup,
            _ => return None,
        }),
    })
}

const STATES: &str = "free, active, expired, released, abandoned, reset, backup, reserved, bootp";

/// Parses a whole `dhcpd.leases` file; `file` names it in errors.
pub fn parse(src: &[u8], file: &str) -> Result<IscFile, ParseError> {
    let mut lx = Lexer {
        src,
        i: 0,
        line: 1,
        col: 1,
        file,
    };
    let mut out = IscFile::default();
    loop {
        let (t, p) = lx.next()?;
        match t {
            Tok::Eof => return Ok(out),
            Tok::Word(w) if w == "lease" => {
                let l = parse_lease(&mut lx, p).map_err(|mut e| {
                    // Name the declaration, unless the message already does.
                    if !e.msg.contains("`lease ") {
                        e.msg
                            .push_str(&format!(" (in the `lease` declaration at line {})", p.line));
                    }
                    e
                })?;
                out.declarations += 1;
                out.leases.insert(l.addr, l);
            }
            Tok::Semi => {}
            Tok::RBrace => return Err(lx.err(p, "unexpected `}` outside any declaration")),
            _ => skip_statement(&mut lx, p, Some(t))?,
        }
    }
}

/// Skips one statement whose first token (`first`, at `start`) was already
/// read: up to its `;`, or to the end of its balanced `{ ... }` block.
fn skip_statement(lx: &mut Lexer<'_>, start: Pos, first: Option<Tok>) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut t = first;
    loop {
        let tok = match t.take() {
            Some(t) => t,
            None => lx.next()?.0,
        };
        match tok {
            Tok::Semi if depth == 0 => return Ok(()),
            Tok::LBrace => depth += 1,
            Tok::RBrace if depth == 0 => {
                return Err(lx.err(start, "statement not terminated by `;` before `}`"))
            }
            Tok::RBrace => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Tok::Eof => {
                return Err(lx.err(
                    start,
                    if depth > 0 {
                        "unexpected end of file inside the block that starts here: expected `}`"
                    } else {
                        "unexpected end of file in the statement that starts here: expected `;`"
                    },
                ))
            }
            _ => {}
        }
    }
}

fn expect_semi(lx: &mut Lexer<'_>, after: &str) -> Result<(), ParseError> {
    match lx.next()? {
        (Tok::Semi, _) => Ok(()),
        (t, p) => Err(lx.err(
            p,
            format!("expected `;` after {after}, found {}", t.describe()),
        )),
    }
}

fn expect_word(lx: &mut Lexer<'_>, what: &str) -> Result<(String, Pos), ParseError> {
    match lx.next()? {
        (Tok::Word(w), p) => Ok((w, p)),
        (t, p) => Err(lx.err(p, format!("expected {what}, found {}", t.describe()))),
    }
}

fn parse_lease(lx: &mut Lexer<'_>, start: Pos) -> Result<SourceLease, ParseError> {
    let (a, ap) = expect_word(lx, "an IPv4 address after `lease`")?;
    let addr: Ipv4Addr = a.parse().map_err(|_| {
        lx.err(
            ap,
            format!("expected an IPv4 address after `lease`, found `{a}`"),
        )
    })?;
    match lx.next()? {
        (Tok::LBrace, _) => {}
        (t, p) => {
            return Err(lx.err(
                p,
                format!("expected `{{` after `lease {addr}`, found {}", t.describe()),
            ))
        }
    }
    let mut l = SourceLease::new(addr, start.line);
    let mut state: Option<IscState> = None;
    let mut reserved_flag = false;
    loop {
        let (t, p) = lx.next()?;
        let w = match t {
            Tok::RBrace => break,
            Tok::Semi => continue,
            Tok::Eof => {
                return Err(lx.err(
                    p,
                    format!(
                        "unexpected end of file inside `lease {addr}` (opened at line {}, column {}): expected `}}`",
                        start.line, start.col
                    ),
                ))
            }
            Tok::Word(w) => w,
            t => {
                return Err(lx.err(
                    p,
                    format!("expected a statement or `}}` in `lease {addr}`, found {}", t.describe()),
                ))
            }
        };
        match w.as_str() {
            "starts" | "ends" | "cltt" | "tstp" | "tsfp" | "atsfp" => {
                let v = parse_date(lx, &w)?;
                expect_semi(lx, &format!("the `{w}` date"))?;
                match w.as_str() {
                    "starts" => l.start = v,
                    "ends" => l.expiry = v,
                    "cltt" => l.cltt = v,
                    "tstp" => l.tstp = v,
                    "tsfp" => l.tsfp = v,
                    _ => l.atsfp = v,
                }
            }
            "binding" | "next" | "rewind" => {
                if w != "binding" {
                    let (b, bp) = expect_word(lx, "`binding`")?;
                    if b != "binding" {
                        return Err(
                            lx.err(bp, format!("expected `binding` after `{w}`, found `{b}`"))
                        );
                    }
                }
                let (s, sp) = expect_word(lx, "`state`")?;
                if s != "state" {
                    return Err(
                        lx.err(sp, format!("expected `state` after `binding`, found `{s}`"))
                    );
                }
                let (v, vp) = expect_word(lx, "a binding state")?;
                let st = isc_state(&v).ok_or_else(|| {
                    lx.err(
                        vp,
                        format!("unknown binding state `{v}` (expected one of {STATES})"),
                    )
                })?;
                expect_semi(lx, "the binding state")?;
                if w == "binding" {
                    state = Some(st);
                }
            }
            "hardware" => {
                let (ty, tp) = expect_word(lx, "a hardware type")?;
                l.htype = match ty.as_str() {
                    "ethernet" => 1,
                    "token-ring" => 6,
                    "fddi" => 8,
                    "infiniband" => 32,
                    _ => {
                        return Err(lx.err(
                            tp,
                            format!("unknown hardware type `{ty}` (expected ethernet, token-ring, fddi or infiniband)"),
                        ))
                    }
                };
                let (hw, hp) = expect_word(lx, "a hardware address")?;
                l.hw = parse_colon_hex(&hw)
                    .map_err(|e| lx.err(hp, format!("bad hardware address: {e}")))?;
                if l.hw.len() > 16 {
                    return Err(lx.err(
                        hp,
                        format!("hardware address of {} octets (at most 16)", l.hw.len()),
                    ));
                }
                expect_semi(lx, "the hardware address")?;
            }
            "uid" => {
                l.client_id = match lx.next()? {
                    (Tok::Str(s), _) => s,
                    (Tok::Word(h), hp) => {
                        parse_colon_hex(&h).map_err(|e| lx.err(hp, format!("bad uid: {e}")))?
                    }
                    (t, tp) => {
                        return Err(lx.err(
                            tp,
                            format!(
                                "expected a quoted string or hex octets after `uid`, found {}",
                                t.describe()
                            ),
                        ))
                    }
                };
                expect_semi(lx, "the uid")?;
            }
            "client-hostname" => {
                match lx.next()? {
                    (Tok::Str(s), _) => l.hostname = Some(String::from_utf8_lossy(&s).into_owned()),
                    (t, tp) => {
                        return Err(lx.err(
                            tp,
                            format!(
                                "expected a quoted host name after `client-hostname`, found {}",
                                t.describe()
                            ),
                        ))
                    }
                }
                expect_semi(lx, "the host name")?;
            }
            "abandoned" => {
                // Pre-3.0 files mark abandoned leases with a flag.
                expect_semi(lx, "`abandoned`")?;
                state = Some(IscState::Binding(BindingStatus::Abandoned));
            }
            "reserved" => {
                expect_semi(lx, "`reserved`")?;
                reserved_flag = true;
            }
            "bootp" => {
                expect_semi(lx, "`bootp`")?;
            }
            _ => skip_statement(lx, p, None)?,
        }
    }
    let has_client = !l.client_id.is_empty() || !l.hw.is_empty();
    // A declaration without a binding state (very old files) is active while it names a client.
    let st = state.unwrap_or(IscState::Binding(if has_client {
        BindingStatus::Active
    } else {
        BindingStatus::Free
    }));
    use BindingStatus as B;
    l.state = match st {
        IscState::Binding(B::Active) | IscState::Bootp if reserved_flag => LeaseState::Reserved,
        IscState::Binding(B::Active) | IscState::Bootp => LeaseState::Active,
        IscState::Binding(B::Expired) => LeaseState::Expired,
        IscState::Binding(B::Released) => LeaseState::Released,
        IscState::Binding(B::Free | B::Reset) if has_client => LeaseState::Released,
        IscState::Binding(B::Free | B::Reset) => LeaseState::Free,
        IscState::Binding(B::Abandoned) => LeaseState::Abandoned,
        IscState::Binding(B::Backup) => LeaseState::Backup,
        IscState::Reserved => LeaseState::Reserved,
    };
    if l.state == LeaseState::Backup {
        l.owner = Owner::Backup;
    }
    l.lease_time = match (l.start, l.expiry) {
        (_, u32::MAX) => u32::MAX,
        (s, e) if s > 0 && e >= s => e - s,
        _ => 0,
    };
    Ok(l)
}

/// `W YYYY/MM/DD HH:MM:SS` (UTC), `epoch N`, or `never` (u32::MAX).
fn parse_date(lx: &mut Lexer<'_>, what: &str) -> Result<u32, ParseError> {
    let (w, p) = expect_word(lx, &format!("a date after `{what}`"))?;
    if w == "never" {
        return Ok(u32::MAX);
    }
    if w == "epoch" {
        let (n, np) = expect_word(lx, "seconds after `epoch`")?;
        return n.parse::<u32>().map_err(|_| {
            lx.err(
                np,
                format!("expected unix seconds after `epoch`, found `{n}`"),
            )
        });
    }
    if !(w.len() == 1 && w.as_bytes()[0].is_ascii_digit() && w.as_bytes()[0] <= b'6') {
        return Err(lx.err(
            p,
            format!("expected a date (`weekday YYYY/MM/DD HH:MM:SS`, `epoch N` or `never`) after `{what}`, found `{w}`"),
        ));
    }
    let (d, dp) = expect_word(lx, "a date YYYY/MM/DD")?;
    let nums = |s: &str, sep: char, n: usize| -> Option<Vec<u32>> {
        let v: Vec<u32> = s
            .split(sep)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == n).then_some(v)
    };
    let ymd = nums(&d, '/', 3)
        .ok_or_else(|| lx.err(dp, format!("expected a date YYYY/MM/DD, found `{d}`")))?;
    let (y, m, day) = (ymd[0], ymd[1], ymd[2]);
    if !(1..=12).contains(&m) {
        return Err(lx.err(dp, format!("bad date `{d}`: month {m} is not in 1..12")));
    }
    if day == 0 || day > days_in_month(i64::from(y), m) {
        return Err(lx.err(
            dp,
            format!("bad date `{d}`: day {day} does not exist in that month"),
        ));
    }
    let (t, tp) = expect_word(lx, "a time HH:MM:SS")?;
    let hms = nums(&t, ':', 3)
        .ok_or_else(|| lx.err(tp, format!("expected a time HH:MM:SS, found `{t}`")))?;
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return Err(lx.err(tp, format!("bad time `{t}`: out of range")));
    }
    let secs = days_from_civil(i64::from(y), m, day) * 86_400
        + i64::from(hms[0]) * 3600
        + i64::from(hms[1]) * 60
        + i64::from(hms[2]);
    u32::try_from(secs)
        .ok()
        .filter(|&s| s != u32::MAX)
        .ok_or_else(|| lx.err(dp, format!("date `{d} {t}` is outside 1970..2106")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> SourceLease {
        let f = parse(src.as_bytes(), "t.leases").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.leases.len(), 1);
        f.leases
            .into_values()
            .next()
            .unwrap_or_else(|| unreachable!())
    }

    fn err(src: &str) -> String {
        match parse(src.as_bytes(), "t.leases") {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    const FULL: &str = r#"# comment
authoring-byte-order little-endian;
server-duid "\000\001\000\0012\225";
failover peer "pair" state {
  my state normal at 0 2026/11/22 02:08:40;
}
lease 10.0.0.5 {
  starts 0 2026/11/22 02:08:40;
  ends 0 2026/11/22 03:08:40;
  tstp 0 2026/11/22 03:38:40;
  tsfp 0 2026/11/22 03:18:40;
  atsfp 0 2026/11/22 03:18:40;
  cltt 0 2026/11/22 02:08:40;
  binding state active;
  next binding state expired;
  hardware ethernet 00:0c:01:02:03:04;
  uid "\001\000\014\001\002\003\004";
  set vendor-class-identifier = "udhcp 1.35.0";
  on expiry { set x = "}"; }
  client-hostname "host-a";
}
"#;

    #[test]
    fn full_declaration() {
        let l = one(FULL);
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(l.line, 7);
        assert_eq!(l.state, LeaseState::Active);
        assert_eq!(l.start, 1_795_313_320);
        assert_eq!(l.expiry, 1_795_316_920);
        assert_eq!(l.lease_time, 3600);
        assert_eq!(l.tstp, 1_795_318_720);
        assert_eq!(l.tsfp, 1_795_317_520);
        assert_eq!(l.atsfp, 1_795_317_520);
        assert_eq!(l.hw, vec![0, 12, 1, 2, 3, 4]);
        assert_eq!(l.client_id, vec![1, 0, 12, 1, 2, 3, 4]);
        assert_eq!(l.hostname.as_deref(), Some("host-a"));
    }

    #[test]
    fn later_declaration_wins_and_states_map() {
        let src = "lease 10.0.0.1 { binding state active; hardware ethernet 1:2:3:4:5:6; }\n\
                   lease 10.0.0.1 { binding state free; hardware ethernet 1:2:3:4:5:6; }\n\
                   lease 10.0.0.2 { binding state backup; }\n\
                   lease 10.0.0.3 { binding state free; }\n\
                   lease 10.0.0.4 { starts epoch 100; ends never; binding state active; reserved; uid 01:aa; }\n";
        let f = parse(src.as_bytes(), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.declarations, 5);
        let g = |a: u8| &f.leases[&Ipv4Addr::new(10, 0, 0, a)];
        assert_eq!((g(1).state, g(1).line), (LeaseState::Released, 2));
        assert_eq!(
            (g(2).state, g(2).owner),
            (LeaseState::Backup, Owner::Backup)
        );
        assert_eq!(g(3).state, LeaseState::Free);
        assert_eq!(g(4).state, LeaseState::Reserved);
        assert_eq!((g(4).start, g(4).expiry), (100, u32::MAX));
        assert_eq!(g(4).client_id, vec![1, 0xaa]);
    }

    #[test]
    fn truncated_file_names_the_open_lease() {
        let cut = &FULL[..FULL.find("client-hostname").unwrap_or(0)];
        let e = err(cut);
        assert!(e.starts_with("t.leases:"), "{e}");
        assert!(
            e.contains("inside `lease 10.0.0.5` (opened at line 7, column 1): expected `}`"),
            "{e}"
        );
        // Cut in the middle of a statement: the statement is named.
        let e = err("lease 10.0.0.5 {\n  starts 0 2026/11/22");
        assert!(e.contains("t.leases:2:"), "{e}");
        let e = err("lease 10.0.0.5 {\n  uid \"abc");
        assert_eq!(
            e,
            "t.leases:2:7: unterminated string: end of file before the closing `\"` (in the `lease` declaration at line 1)"
        );
    }

    #[test]
    fn bad_dates_are_positioned() {
        let e = err("lease 10.0.0.5 {\n  starts 3 2026/13/01 00:00:00;\n}");
        assert_eq!(
            e,
            "t.leases:2:12: bad date `2026/13/01`: month 13 is not in 1..12 (in the `lease` declaration at line 1)"
        );
        let e = err("lease 10.0.0.5 {\n  ends 3 2026/02/29 00:00:00;\n}");
        assert!(
            e.starts_with("t.leases:2:10: bad date `2026/02/29`: day 29"),
            "{e}"
        );
        let e = err("lease 10.0.0.5 {\n  ends 3 2026/02/28 24:00:00;\n}");
        assert_eq!(e, "t.leases:2:21: bad time `24:00:00`: out of range (in the `lease` declaration at line 1)");
        let e = err("lease 10.0.0.5 {\n  ends tomorrow;\n}");
        assert!(e.starts_with("t.leases:2:8: expected a date"), "{e}");
        let e = err("lease 10.0.0.5 {\n  ends 1 1969/12/31 00:00:00;\n}");
        assert!(e.contains("outside 1970..2106"), "{e}");
    }

    #[test]
    fn unknown_states_and_other_errors() {
        let e = err("lease 10.0.0.5 {\n  binding state bogus;\n}");
        assert!(
            e.starts_with("t.leases:2:17: unknown binding state `bogus` (expected one of free,"),
            "{e}"
        );
        let e = err("lease 10.0.0.300 { }");
        assert_eq!(
            e,
            "t.leases:1:7: expected an IPv4 address after `lease`, found `10.0.0.300` (in the `lease` declaration at line 1)"
        );
        let e = err("lease 10.0.0.5 {\n hardware ethernet 00:zz;\n}");
        assert!(e.starts_with("t.leases:2:20: bad hardware address"), "{e}");
        let e = err("lease 10.0.0.5 {\n hardware wifi 00:11;\n}");
        assert!(
            e.starts_with("t.leases:2:11: unknown hardware type `wifi`"),
            "{e}"
        );
        let e = err("lease 10.0.0.5 {\n binding state active\n}");
        assert_eq!(
            e,
            "t.leases:3:1: expected `;` after the binding state, found `}` (in the `lease` declaration at line 1)"
        );
        let e = err("}");
        assert_eq!(e, "t.leases:1:1: unexpected `}` outside any declaration");
        let e = err("lease 10.0.0.5 { uid \"\\777\"; }");
        assert!(e.contains("octal escape"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        let alphabet = b"lease {};\"#\\ 10.0.0.1 starts 0 2026/1/1 0:0:0 binding state active\n";
        for _ in 0..3000 {
            let n = (seed % 80) as usize;
            let mut s = Vec::with_capacity(n);
            for _ in 0..n {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let _ = parse(&s, "fuzz");
        }
        // And every prefix of a valid file.
        for i in 0..FULL.len() {
            let _ = parse(&FULL.as_bytes()[..i], "prefix");
        }
    }
}
