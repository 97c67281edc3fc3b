//! Helpers shared by the fuzz targets in `fuzz_targets/`: building DHCPv4 requests and a
//! scratch directory on tmpfs (targets that open a lease table do so on every input).

use std::path::PathBuf;

/// BOOTP header length up to the magic cookie, and the cookie.
pub const OPTIONS_OFFSET: usize = 240;
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Fixed fields of a DHCPv4 request.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub htype: u8,
    pub hlen: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: [u8; 4],
    pub giaddr: [u8; 4],
    pub chaddr: [u8; 16],
}

/// A BOOTREQUEST with `opts` (code, value) in order, then END. Values longer than 255 bytes
/// are cut (the encoding has one length byte).
pub fn dhcp_request(h: &Header, opts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; OPTIONS_OFFSET];
    b[0] = 1;
    b[1] = h.htype;
    b[2] = h.hlen;
    b[4..8].copy_from_slice(&h.xid.to_be_bytes());
    b[8..10].copy_from_slice(&h.secs.to_be_bytes());
    b[10..12].copy_from_slice(&h.flags.to_be_bytes());
    b[12..16].copy_from_slice(&h.ciaddr);
    b[24..28].copy_from_slice(&h.giaddr);
    b[28..44].copy_from_slice(&h.chaddr);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (code, val) in opts {
        let val = &val[..val.len().min(255)];
        b.push(*code);
        b.push(val.len() as u8);
        b.extend_from_slice(val);
    }
    b.push(255);
    b
}

/// A fresh directory for one input's files: on tmpfs (`/dev/shm`) when there is one, since
/// some targets create and map a lease file per input.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    let b = tempfile::Builder::new()
        .prefix("xdhcpd-fuzz-")
        .tempdir_in(&shm);
    match b {
        Ok(d) => d,
        Err(_) => tempfile::Builder::new()
            .prefix("xdhcpd-fuzz-")
            .tempdir()
            .expect("a temporary directory for the fuzz input"),
    }
}
