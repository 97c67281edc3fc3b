//! `--acked-log FILE`: one line per DHCPACK a simulated client received, so a
//! test can check afterwards that the server kept every lease it acknowledged
//! (crash tests).
//!
//! Line format (space separated, one ACK per line):
//!
//! ```text
//! UNIX_MS CLIENT_KEY ADDRESS LEASE_SECS
//! 1763779200123 01024c00000007 10.77.1.7 3600
//! ```
//!
//! * `UNIX_MS`: wall-clock time (milliseconds since the epoch) at which the
//!   loadgen processed the ACK, i.e. after the server sent it;
//! * `CLIENT_KEY`: lower-case hex without separators of the client
//!   identifier (option 61, type byte included) the client sent, or of its
//!   MAC when it sends none (`--no-client-id`);
//! * `ADDRESS`: `yiaddr` of the ACK;
//! * `LEASE_SECS`: option 51 of the ACK (0 when absent).
//!
//! Each thread formats its lines into its own buffer and appends the buffer
//! with one `write(2)` per loop iteration (a receive batch) on a file opened
//! with `O_APPEND`, so lines of different threads never interleave and an
//! ACK is in the file (the page cache: it survives the loadgen being killed)
//! within one batch of being received.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The shared log file.
#[derive(Debug)]
pub struct AckLog {
    file: File,
    path: PathBuf,
}

impl AckLog {
    /// Opens `path` for appending, creating it if needed (existing lines are kept,
    /// so one file can collect several runs).
    pub fn open(path: &Path) -> io::Result<AckLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(AckLog {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `buf` (whole lines) in one write and clears it.
    pub fn append(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        // `&File` implements Write; with O_APPEND each write lands at the end
        // atomically with respect to other writers of this file.
        let mut f = &self.file;
        f.write_all(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("appending to the ACK log {}: {e}", self.path.display()),
            )
        })?;
        buf.clear();
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The key the loadgen's client with MAC `mac` is known by: its client
/// identifier (`01` + MAC) when it sends one, else the MAC.
pub fn client_key_hex(mac: &[u8; 6], client_id: bool) -> String {
    let mut s = String::with_capacity(14);
    if client_id {
        s.push_str("01");
    }
    for b in mac {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Formats one line (with its newline) into `buf`.
pub fn format_line(
    buf: &mut Vec<u8>,
    unix_ms: u64,
    mac: &[u8; 6],
    client_id: bool,
    addr: Ipv4Addr,
    lease_secs: u32,
) {
    // Writing into a Vec<u8> cannot fail.
    let _ = writeln!(
        buf,
        "{unix_ms} {} {addr} {lease_secs}",
        client_key_hex(mac, client_id)
    );
}

/// One parsed line (for tests and checkers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckLine {
    pub unix_ms: u64,
    pub client: String,
    pub addr: Ipv4Addr,
    pub lease_secs: u32,
}

/// Parses one line; the error says which field is wrong.
pub fn parse_line(line: &str) -> Result<AckLine, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        return Err(format!("expected 4 fields, found {}: {line:?}", f.len()));
    }
    let unix_ms = f[0].parse().map_err(|e| format!("time {:?}: {e}", f[0]))?;
    if f[1].is_empty() || !f[1].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("client key {:?} is not hex", f[1]));
    }
    let addr = f[2]
        .parse()
        .map_err(|e| format!("address {:?}: {e}", f[2]))?;
    let lease_secs = f[3]
        .parse()
        .map_err(|e| format!("lease time {:?}: {e}", f[3]))?;
    Ok(AckLine {
        unix_ms,
        client: f[1].to_owned(),
        addr,
        lease_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips_with_client_id_and_mac() {
        let mac = [0x02, 0x4c, 0, 0, 0x01, 0xff];
        let mut buf = Vec::new();
        format_line(
            &mut buf,
            1_763_779_200_123,
            &mac,
            true,
            Ipv4Addr::new(10, 77, 1, 7),
            3600,
        );
        format_line(&mut buf, 5, &mac, false, Ipv4Addr::new(10, 0, 0, 1), 0);
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "1763779200123 01024c000001ff 10.77.1.7 3600\n5 024c000001ff 10.0.0.1 0\n"
        );
        let lines: Vec<AckLine> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(lines[0].client, "01024c000001ff");
        assert_eq!(lines[0].addr, Ipv4Addr::new(10, 77, 1, 7));
        assert_eq!(lines[0].lease_secs, 3600);
        assert_eq!(lines[1].unix_ms, 5);
    }

    #[test]
    fn bad_lines_name_the_field() {
        assert!(parse_line("1 01ab 10.0.0.1")
            .unwrap_err()
            .contains("4 fields"));
        assert!(parse_line("x 01ab 10.0.0.1 1")
            .unwrap_err()
            .contains("time"));
        assert!(parse_line("1 zz 10.0.0.1 1")
            .unwrap_err()
            .contains("client key"));
        assert!(parse_line("1 01ab 10.0.0 1")
            .unwrap_err()
            .contains("address"));
        assert!(parse_line("1 01ab 10.0.0.1 -1")
            .unwrap_err()
            .contains("lease time"));
    }

    #[test]
    fn append_writes_whole_buffers_and_keeps_earlier_runs() {
        let dir = std::env::temp_dir().join(format!("acklog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("acked.log");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, "1 01aa 10.0.0.1 60\n").unwrap();
        let log = AckLog::open(&path).unwrap();
        let mut buf = Vec::new();
        format_line(
            &mut buf,
            2,
            &[2, 0, 0, 0, 0, 2],
            true,
            Ipv4Addr::new(10, 0, 0, 2),
            60,
        );
        log.append(&mut buf).unwrap();
        assert!(buf.is_empty(), "append clears the buffer");
        log.append(&mut buf).unwrap(); // empty: no-op
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "1 01aa 10.0.0.1 60\n2 01020000000002 10.0.0.2 60\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_error_names_the_file() {
        let e = AckLog::open(Path::new("/nonexistent-dir-xdhcpd/acked.log")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-dir-xdhcpd/acked.log"),
            "{e}"
        );
    }
}
