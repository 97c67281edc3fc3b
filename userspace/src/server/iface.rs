//! Facts about the served interface: index, MAC, IPv4 address, RX queues.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// First IPv4 address of the interface, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// Number of RX queues (one AF_XDP socket and one worker each).
    pub rx_queues: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("interface {0:?} not found (check `server.interface` in the configuration)")]
    NotFound(String),
    #[error("interface {name}: cannot read {what}: {detail}")]
    Read {
        name: String,
        what: &'static str,
        detail: String,
    },
}

impl Interface {
    pub fn lookup(name: &str) -> Result<Self, IfaceError> {
        let cname = CString::new(name).map_err(|_| IfaceError::NotFound(name.to_string()))?;
        // SAFETY: cname is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(IfaceError::NotFound(name.to_string()));
        }
        let sys = Path::new("/sys/class/net").join(name);
        let mac_text =
            std::fs::read_to_string(sys.join("address")).map_err(|e| IfaceError::Read {
                name: name.to_string(),
                what: "MAC address",
                detail: e.to_string(),
            })?;
        let mac = parse_mac(mac_text.trim()).ok_or_else(|| IfaceError::Read {
            name: name.to_string(),
            what: "MAC address",
            detail: format!("unexpected text {:?}", mac_text.trim()),
        })?;
        let rx_queues = std::fs::read_dir(sys.join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count() as u32
            })
            .unwrap_or(1)
            .max(1);
        Ok(Interface {
            name: name.to_string(),
            index,
            mac,
            ipv4: first_ipv4(name),
            rx_queues,
        })
    }
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn first_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut found = None;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we free with freeifaddrs; we only
    // read entries whose pointers are non-null and of family AF_INET.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return None;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null()
                && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET
                && std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() == name.as_bytes()
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }
    #[test]
    fn loopback_exists_and_missing_is_clear() {
        let lo = Interface::lookup("lo").unwrap();
        assert!(lo.index > 0);
        let e = Interface::lookup("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no-such-if0"), "{e}");
    }
}
