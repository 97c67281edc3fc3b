//! Child processes of the run (stopped on drop), Ctrl-C handling, and the guards that undo
//! what the run changed (temporary directory, raised sysctls).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub(super) extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(super) fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

/// Sleeps in small steps so Ctrl-C is seen quickly.
pub(super) fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupt()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// A child process stopped (signal, then SIGKILL after a grace time) on drop.
pub(super) struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
    stop_signal: libc::c_int,
    /// A helper that lives as long as the process (the `/metrics` scraper), killed first.
    companion: Option<(Child, PathBuf)>,
    /// Servers it depends on (the NATS server of `xdhcpd-xdp-nats`), started before it and
    /// stopped after it (fields drop after `Drop::drop`).
    backends: Vec<Proc>,
}

impl Proc {
    pub(super) fn spawn(
        mut cmd: Command,
        name: &str,
        log: &Path,
        stop_signal: libc::c_int,
    ) -> Result<Proc> {
        let line = util::display(&cmd);
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: `{line}`"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
            stop_signal,
            companion: None,
            backends: Vec::new(),
        })
    }

    /// Keeps `backend` running as long as this process; stopped after it.
    pub(super) fn keep_backend(&mut self, backend: Proc) {
        self.backends.push(backend);
    }

    /// The pid of the first backend kept (None: none).
    pub(super) fn backend_pid(&self) -> Option<u32> {
        self.backends.first().map(Proc::pid)
    }

    /// Starts `cmd` beside the process (output to `log`); it is killed when the process stops.
    pub(super) fn attach(&mut self, mut cmd: Command, log: &Path) -> Result<()> {
        let line = util::display(&cmd);
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting `{line}` beside {}", self.name))?;
        self.companion = Some((child, log.to_path_buf()));
        Ok(())
    }

    fn stop_companion(&mut self) {
        if let Some((mut c, log)) = self.companion.take() {
            let _ = c.kill();
            let _ = c.wait();
            // Its output is one line per round (an HTTP status code for the scraper).
            let text = fs::read_to_string(&log).unwrap_or_default();
            let ok = text.lines().filter(|l| l.trim() == "200").count();
            eprintln!(
                "{}: beside it, {ok} of {} rounds answered 200 ({})",
                self.name,
                text.lines().count(),
                log.display()
            );
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(super) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Signals the process and waits up to `grace`, then kills it.
    pub(super) fn stop(&mut self, grace: Duration) -> Result<()> {
        self.stop_companion();
        if !self.running() {
            return Ok(());
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, self.stop_signal);
        }
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if !self.running() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("{} did not stop within {grace:?}; killed", self.name)
    }

    /// Waits for exit until `deadline`; kills it past the deadline.
    pub(super) fn wait_until(&mut self, deadline: Instant) -> Result<std::process::ExitStatus> {
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                let _ = self.stop(Duration::from_secs(3));
                bail!("interrupted; cleaning up");
            }
            if Instant::now() >= deadline {
                let _ = self.stop(Duration::from_secs(3));
                bail!(
                    "{} ran past its deadline; stopped. Its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}

pub(super) struct RemoveDir(pub(super) PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Raises a global sysctl for the run and puts the old value back on drop.
pub(super) struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    /// Sets `path` to `value` unless it already holds at least that much.
    pub(super) fn raise(path: &str, value: u64) -> Result<Option<Sysctl>> {
        let path = PathBuf::from(path);
        let old = fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string();
        if old.parse::<u64>().is_ok_and(|v| v >= value) {
            return Ok(None);
        }
        fs::write(&path, value.to_string())
            .with_context(|| format!("writing {value} to {}", path.display()))?;
        Ok(Some(Sysctl { path, old }))
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}
