//! systemd readiness and watchdog notifications (`sd_notify(3)` protocol: one datagram to the
//! UNIX socket named by `$NOTIFY_SOCKET`). Without that variable every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`) to systemd, if
/// the daemon runs under systemd with `Type=notify`. Errors are logged at debug level: a
/// lost notification must not stop the daemon.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let r = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // Abstract socket namespace.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        tracing::debug!("sd_notify {state}: {e}");
    }
}

/// Half the watchdog period systemd asks for (`$WATCHDOG_USEC`, for this process per
/// `$WATCHDOG_PID`), or None without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_sends_state_to_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&p).expect("bind");
        // The only test in this binary that sets the variable.
        std::env::set_var("NOTIFY_SOCKET", &p);
        notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let n = rx.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
