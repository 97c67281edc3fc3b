//! A real PostgreSQL 15 (Debian's `postgresql`) for namespace tests, run by the test as the
//! `postgres` user in a temporary directory inside the server namespace and removed on drop;
//! and one HTTP request on the daemon's control socket. Used by `registration_postgres_ns`
//! and `events_nats_ns`.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon_common::{output, write_file, Res};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The server namespace's own loopback: nothing else listens there.
pub const PG_PORT: u16 = 55432;

/// A PostgreSQL cluster in a temporary directory owned by `postgres`, run in the server
/// namespace; stopped (immediately) and removed on drop. Or, from [`Pg::init_kept`] /
/// [`Pg::reuse`], in a directory that is kept: stopped cleanly (`-m fast`) on drop, so the
/// next run starts it without recovery.
pub struct Pg {
    pub dir: PgDir,
    pub ns: String,
}

/// Where a [`Pg`] lives: a temporary directory (removed on drop) or a kept one.
pub enum PgDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl PgDir {
    pub fn path(&self) -> &Path {
        match self {
            PgDir::Temp(t) => t.path(),
            PgDir::Kept(p) => p,
        }
    }
}

impl Pg {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn init(ns: &str) -> Res<Pg> {
        let dir = tempfile::Builder::new()
            .prefix("xdhcpd-pg-")
            .tempdir()
            .map_err(|e| format!("pg temp dir: {e}"))?;
        Self::initdb(Pg {
            dir: PgDir::Temp(dir),
            ns: ns.to_string(),
        })
    }

    /// A new cluster in `dir` (created; it must not exist or be empty), kept after the test.
    pub fn init_kept(ns: &str, dir: &Path) -> Res<Pg> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty: a new PostgreSQL cluster needs an empty directory",
                dir.display()
            ));
        }
        Self::initdb(Pg {
            dir: PgDir::Kept(dir.to_path_buf()),
            ns: ns.to_string(),
        })
    }

    /// The cluster an earlier [`Pg::init_kept`] made in `dir` (not started).
    pub fn reuse(ns: &str, dir: &Path) -> Res<Pg> {
        let pg = Pg {
            dir: PgDir::Kept(dir.to_path_buf()),
            ns: ns.to_string(),
        };
        for f in [pg.data().join("PG_VERSION"), dir.join("su-pw")] {
            if !f.is_file() {
                return Err(format!(
                    "{} holds no cluster of this test: {} is missing",
                    dir.display(),
                    f.display()
                ));
            }
        }
        Ok(pg)
    }

    fn initdb(pg: Pg) -> Res<Pg> {
        let d = pg.dir.path().to_string_lossy().to_string();
        run(Command::new("chown").args(["postgres:postgres", &d]))?;
        let pw = pg.dir.path().join("su-pw");
        write_file(&pw, "superpw\n")?;
        run(Command::new("chown").args(["postgres", &pw.to_string_lossy()]))?;
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(pg.data())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pw.display())))?;
        Ok(pg)
    }

    /// Starts the server; `tcp`: also on 127.0.0.1:PG_PORT (else its UNIX socket only).
    pub fn start(&self, tcp: bool) -> Res<()> {
        let listen = if tcp { "127.0.0.1" } else { "" };
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-o")
            .arg(format!(
                "-p {PG_PORT} -k {} -c listen_addresses='{listen}' -c fsync=off",
                self.sock().display()
            ))
            .arg("-l")
            .arg(self.dir.path().join("pg.log"))
            .args(["-w", "start"]))
        .map(|_| ())
    }

    pub fn stop(&self) -> Res<()> {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]))
        .map(|_| ())
    }

    /// psql over the UNIX socket as `postgres` on `db`; stdout.
    pub fn psql(&self, db: &str, sql: &str) -> Res<String> {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/psql"))
            .arg("-h")
            .arg(self.sock())
            .args(["-p", &PG_PORT.to_string(), "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]))
    }
}

impl Pg {
    /// Before `start`: TLS on (`ssl = on` with `cert` / `key` copied into the data directory)
    /// and required: TCP connections without TLS are rejected (`hostnossl ... reject` before
    /// the initdb `host` lines).
    pub fn enable_tls(&self, cert: &Path, key: &Path) -> Res<()> {
        let data = self.data();
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let dst = data.join(to);
            std::fs::copy(from, &dst)
                .map_err(|e| format!("{} -> {}: {e}", from.display(), dst.display()))?;
            run(Command::new("chown").args(["postgres:postgres", &dst.to_string_lossy()]))?;
            run(Command::new("chmod").args(["600", &dst.to_string_lossy()]))?;
        }
        let conf = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(|e| format!("{}: {e}", hba.display()))?;
        std::fs::write(
            &hba,
            format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{text}"),
        )
        .map_err(|e| format!("{}: {e}", hba.display()))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // A kept cluster is shut down cleanly (a checkpoint), a temporary one just ended.
        let mode = match self.dir {
            PgDir::Temp(_) => "immediate",
            PgDir::Kept(_) => "fast",
        };
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"])
            .output();
    }
}

pub fn run(cmd: &mut Command) -> Res<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

/// One HTTP/1.0 request on the control socket: (status code, body).
pub fn http(sock: &Path, method: &str, path: &str, body: &str) -> Res<(u16, String)> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: xdhcpd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {out}"))?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

impl Pg {
    /// Lets clients from `cidr` log in with a password (scram-sha-256), for a server reached
    /// from other namespaces; before [`Pg::start_on`].
    pub fn allow_hosts(&self, cidr: &str) -> Res<()> {
        use std::io::Write as _;
        let hba = self.data().join("pg_hba.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&hba)
            .map_err(|e| format!("{}: {e}", hba.display()))?;
        writeln!(f, "host all all {cidr} scram-sha-256")
            .map_err(|e| format!("{}: {e}", hba.display()))
    }

    /// Starts the server listening on `listen` (e.g. `*`) port PG_PORT, in its namespace.
    pub fn start_on(&self, listen: &str) -> Res<()> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-o")
            .arg(format!(
                "-p {PG_PORT} -k {} -c listen_addresses='{listen}' -c fsync=off",
                self.sock().display()
            ))
            .arg("-l")
            .arg(self.dir.path().join("pg.log"))
            .args(["-w", "start"]))
        .map(|_| ())
    }
}
