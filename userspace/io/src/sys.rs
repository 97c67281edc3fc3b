//! Small helpers over `libc` shared by the AF_XDP and UDP layers: errno
//! names, interface lookup, socket options.

use std::borrow::Cow;
use std::ffi::CString;
use std::os::fd::RawFd;

/// The errno of the last failed libc call on this thread.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The symbolic name of an errno value ("EBUSY"), for error messages that
/// an operator can search for.
pub fn errno_name(errno: i32) -> Cow<'static, str> {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENOBUFS => "ENOBUFS",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EMSGSIZE => "EMSGSIZE",
        _ => return Cow::Owned(format!("errno {errno}")),
    };
    Cow::Borrowed(name)
}

/// "EBUSY (hint)" or "EBUSY (Device or resource busy)" when there is no hint.
pub(crate) fn errno_text(errno: i32, hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("{} ({h})", errno_name(errno)),
        None => {
            // std's text is "Bad address (os error 14)"; the name already says which.
            let text = std::io::Error::from_raw_os_error(errno).to_string();
            let text = text
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_owned();
            format!("{} ({text})", errno_name(errno))
        }
    }
}

/// A NUL-terminated interface name, checked against IFNAMSIZ.
pub(crate) fn ifname_cstring(ifname: &str) -> Result<CString, String> {
    if ifname.is_empty() {
        return Err("interface name is empty".into());
    }
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(format!(
            "interface name {ifname:?} is longer than {} bytes",
            libc::IFNAMSIZ - 1
        ));
    }
    CString::new(ifname).map_err(|_| format!("interface name {ifname:?} contains a NUL byte"))
}

/// The ifindex of `ifname` in the calling thread's network namespace, or the
/// errno of the lookup.
pub(crate) fn ifindex_of(name: &CString) -> Result<u32, i32> {
    // SAFETY: `name` is a valid NUL-terminated string.
    let ix = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ix == 0 {
        Err(match last_errno() {
            0 => libc::ENODEV,
            e => e,
        })
    } else {
        Ok(ix)
    }
}

/// setsockopt with a plain value; returns the errno on failure.
pub(crate) fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> Result<(), i32> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// poll() one descriptor for POLLIN. `Ok(false)` on timeout or EINTR.
pub(crate) fn poll_readable(fd: RawFd, timeout_ms: i32) -> Result<bool, i32> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let e = last_errno();
        if e == libc::EINTR {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EBUSY), "EBUSY");
        assert_eq!(errno_name(9999), "errno 9999");
        assert_eq!(
            errno_text(libc::EBUSY, Some("held")),
            "EBUSY (held)".to_string()
        );
        assert!(errno_text(libc::ENODEV, None).starts_with("ENODEV (No such device"));
    }

    #[test]
    fn ifname_checks() {
        assert!(ifname_cstring("").is_err());
        assert!(ifname_cstring("0123456789abcdef").is_err());
        assert!(ifname_cstring("a\0b").is_err());
        assert!(ifname_cstring("veth0").is_ok());
    }

    #[test]
    fn unknown_interface() {
        let name = ifname_cstring("xdhcpd-nosuch").unwrap();
        assert_eq!(ifindex_of(&name), Err(libc::ENODEV));
    }
}
