//! Least privilege: once everything that needs root is done (XDP attached, AF_XDP and UDP
//! sockets bound, the failover listener and control socket bound, the lease / WAL /
//! registration files open, the event-log directory made, the nftables guard loaded), the
//! daemon switches to `[server] user` / `group` and keeps only the capabilities its mode
//! still uses at run time ([`runtime_caps`]).
//!
//! What the run time needs was found by running each part as the user with nothing
//! (`userspace/tests/privilege_ns.rs`): lease-file growth on reload, WAL checkpoints,
//! event-log rotation, the reconfigure driver's socket (port 0), failover reconnects (source
//! port 0), XDP map writes (through the map descriptors, no capability on Linux >= 6.5) and
//! removing the XDP program (closing its bpf_link) need none. `--io udp` installs ARP entries
//! (SIOCSARP: CAP_NET_ADMIN) and, with failover, deletes the nftables guard at shutdown by
//! running `nft` (CAP_NET_ADMIN, handed to that child as an ambient capability).
//!
//! Files and directories: before the switch the daemon makes the files it writes the user's
//! (lease file, its `.wal`, the DHCPv6 binding file, the registration store, the reconfigure
//! secret, the event-log files, the control socket) and the directories it created at this
//! start; a directory that existed before and in which it must create files at run time (the
//! event log's and the registration store's) must already be writable by the user, else the
//! start fails naming it.
//!
//! Threads: Linux keeps credentials per thread and the daemon's threads are running when it
//! switches. The switch runs in the main thread, then in every other thread from a signal
//! handler (raw system calls only: async-signal-safe), until `/proc/self/task` lists no
//! thread with other credentials (a thread a not-yet-switched thread starts meanwhile is
//! found by the next pass); what a thread starts afterwards inherits the switched ones.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use xdhcpd_config::{Account, Config, ConfigError, ConfigErrors};

/// The account the daemon runs as after start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// A capability number (linux/capability.h) and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u32, pub &'static str);

pub const CAP_NET_ADMIN: Cap = Cap(12, "CAP_NET_ADMIN");

/// The capabilities kept after the switch, per data path: none on the XDP path;
/// CAP_NET_ADMIN in `--io udp` (ARP entries for clients without an address, and the
/// nftables guard's removal at shutdown). `ambient`: handed to programs the daemon runs
/// (`nft` of the UDP failover guard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapPlan {
    pub keep: Vec<Cap>,
    pub ambient: bool,
}

/// What the daemon keeps on its data path (`udp`: kernel UDP sockets) and whether it runs
/// `nft` at shutdown (`nft_guard`).
pub fn runtime_caps(udp: bool, nft_guard: bool) -> CapPlan {
    CapPlan {
        keep: if udp { vec![CAP_NET_ADMIN] } else { vec![] },
        ambient: udp && nft_guard,
    }
}

impl CapPlan {
    pub fn mask(&self) -> u64 {
        self.keep.iter().fold(0, |m, c| m | (1u64 << c.0))
    }

    pub fn names(&self) -> String {
        if self.keep.is_empty() {
            "none".into()
        } else {
            self.keep.iter().map(|c| c.1).collect::<Vec<_>>().join(", ")
        }
    }
}

fn config_error(cfg: &Config, field: &str, a: &Account, message: String) -> ConfigErrors {
    ConfigErrors {
        errors: vec![ConfigError {
            file: cfg.source.display().to_string(),
            position: Some(a.position),
            field: field.into(),
            message,
        }],
    }
}

/// Looks `server.user` / `server.group` up (NSS): `None` without `user`; an unknown name is a
/// configuration error at the place it was written (`file:line:col: server.user: ...`).
pub fn resolve(cfg: &Config) -> Result<Option<Identity>, ConfigErrors> {
    let Some(user) = &cfg.server.user else {
        return Ok(None);
    };
    let (uid, primary) = match lookup_user(&user.name) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(config_error(
                cfg,
                "server.user",
                user,
                format!("no such user `{}` on this system", user.name),
            ))
        }
        Err(e) => {
            return Err(config_error(
                cfg,
                "server.user",
                user,
                format!("looking up user `{}`: {e}", user.name),
            ))
        }
    };
    let (group, gid) = match &cfg.server.group {
        None => (
            group_name(primary).unwrap_or_else(|| primary.to_string()),
            primary,
        ),
        Some(g) => match lookup_group(&g.name) {
            Ok(Some(gid)) => (g.name.clone(), gid),
            Ok(None) => {
                return Err(config_error(
                    cfg,
                    "server.group",
                    g,
                    format!("no such group `{}` on this system", g.name),
                ))
            }
            Err(e) => {
                return Err(config_error(
                    cfg,
                    "server.group",
                    g,
                    format!("looking up group `{}`: {e}", g.name),
                ))
            }
        },
    };
    if uid == 0 {
        return Err(config_error(
            cfg,
            "server.user",
            user,
            format!(
                "`{}` is root (uid 0): name an unprivileged account, or leave `user` out",
                user.name
            ),
        ));
    }
    Ok(Some(Identity {
        user: user.name.clone(),
        uid,
        group,
        gid,
    }))
}

/// getpwnam_r: (uid, primary gid), `None` when there is no such user.
fn lookup_user(name: &str) -> std::io::Result<Option<(u32, u32)>> {
    let cname = CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid passwd to be filled.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: the buffers outlive the call; getpwnam_r writes at most buf.len() bytes.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        match rc {
            0 if out.is_null() => return Ok(None),
            0 => return Ok(Some((pw.pw_uid, pw.pw_gid))),
            libc::ERANGE if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// getgrnam_r: the gid, `None` when there is no such group.
fn lookup_group(name: &str) -> std::io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid group to be filled.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: the buffers outlive the call; getgrnam_r writes at most buf.len() bytes.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        match rc {
            0 if out.is_null() => return Ok(None),
            0 => return Ok(Some(gr.gr_gid)),
            libc::ERANGE if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// The name of group `gid` (for the log), if it has one.
fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: all-zero is a valid group to be filled.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: the buffers outlive the call.
    let rc =
        unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || gr.gr_name.is_null() {
        return None;
    }
    // SAFETY: getgrgid_r filled gr_name with a NUL-terminated string inside buf.
    Some(
        unsafe { std::ffi::CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The files and directories the daemon hands to the user before the switch.
#[derive(Debug, Default)]
pub struct Handover {
    /// Files it writes (chowned when they exist).
    pub files: Vec<PathBuf>,
    /// Directories it must create files in at run time, with what for (chowned if this start
    /// created them, else they must be writable by the user).
    pub dirs: Vec<(PathBuf, &'static str)>,
    /// Of `dirs` and the files' directories: those absent before start-up (so created by it).
    pub created: Vec<PathBuf>,
}

impl Handover {
    /// Notes which of `dirs` do not exist yet: call before start-up creates anything.
    pub fn note_absent(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        for d in dirs {
            if !d.as_os_str().is_empty() && !d.exists() {
                self.created.push(d);
            }
        }
    }

    /// Chowns the files and the created directories to the user; checks that every
    /// directory the daemon writes in at run time is the user's to write.
    pub fn apply(&self, id: &Identity) -> anyhow::Result<()> {
        for d in &self.created {
            if d.exists() {
                chown(d, id)?;
            }
        }
        for f in &self.files {
            if f.exists() {
                chown(f, id)?;
            }
        }
        for (d, what) in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(d) {
                if self.created.contains(d) {
                    for e in entries.flatten() {
                        chown(&e.path(), id)?;
                    }
                }
            }
            let md =
                std::fs::metadata(d).with_context(|| format!("{what}: reading {}", d.display()))?;
            let mode = md.mode();
            let writable = (md.uid() == id.uid && mode & 0o300 == 0o300)
                || (md.gid() == id.gid && mode & 0o030 == 0o030)
                || mode & 0o003 == 0o003;
            if !writable {
                bail!(
                    "server.user = {}: the {what} directory {} (owner uid {}, gid {}, mode {:o}) \
                     is not writable by {} (uid {}, gid {}): the daemon creates files there at \
                     run time; make it the user's (systemd: StateDirectory=/LogsDirectory=) or \
                     let the daemon create it",
                    id.user,
                    d.display(),
                    md.uid(),
                    md.gid(),
                    mode & 0o7777,
                    id.user,
                    id.uid,
                    id.gid
                );
            }
        }
        Ok(())
    }
}

fn chown(p: &Path, id: &Identity) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(p, Some(id.uid), Some(id.gid)).with_context(|| {
        format!(
            "server.user: making {} {}:{}'s",
            p.display(),
            id.user,
            id.group
        )
    })
}

// ---- The switch, in every thread ----------------------------------------------------------

const PR_CAPBSET_DROP: libc::c_int = 24;
const PR_SET_KEEPCAPS: libc::c_int = 8;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// What every thread switches to (set before any thread is signalled).
static T_UID: AtomicU32 = AtomicU32::new(0);
static T_GID: AtomicU32 = AtomicU32::new(0);
static T_KEEP: AtomicU64 = AtomicU64::new(0);
static T_AMBIENT: AtomicBool = AtomicBool::new(false);
static T_LAST_CAP: AtomicU32 = AtomicU32::new(40);
/// Started as root: change the bounding set, groups and ids. Else (already the user, with
/// the start-up capabilities as ambient ones, as the systemd unit starts it) only the
/// capability sets are cut.
static T_FROM_ROOT: AtomicBool = AtomicBool::new(true);
/// First failure in any thread: step << 32 | errno (0 = none).
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The steps of the switch, as named in errors.
const STEPS: [&str; 7] = [
    "",
    "prctl(PR_CAPBSET_DROP)",
    "setgroups",
    "setresgid",
    "prctl(PR_SET_KEEPCAPS)",
    "setresuid",
    "capset",
];

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The switch of the calling thread, raw system calls only (it also runs in a signal
/// handler). Err((step, errno)).
fn switch_this_thread() -> Result<(), (u64, i32)> {
    let uid = T_UID.load(Ordering::SeqCst);
    let gid = T_GID.load(Ordering::SeqCst);
    let keep = T_KEEP.load(Ordering::SeqCst);
    let ambient = T_AMBIENT.load(Ordering::SeqCst);
    let last = T_LAST_CAP.load(Ordering::SeqCst);
    if T_FROM_ROOT.load(Ordering::SeqCst) {
        // SAFETY: raw system calls on this thread's credentials (switch_ids' contract).
        unsafe { switch_ids(uid, gid, keep, last)? };
    }
    // SAFETY: plain system calls on this thread's credentials, with pointers to locals that
    // outlive them.
    unsafe {
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let inh = if ambient { keep } else { 0 };
        let data = [
            CapData {
                effective: keep as u32,
                permitted: keep as u32,
                inheritable: inh as u32,
            },
            CapData {
                effective: (keep >> 32) as u32,
                permitted: (keep >> 32) as u32,
                inheritable: (inh >> 32) as u32,
            },
        ];
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0 {
            return Err((6, errno()));
        }
        if ambient {
            for cap in 0..64u32 {
                if keep & (1u64 << cap) != 0
                    && libc::prctl(
                        PR_CAP_AMBIENT,
                        PR_CAP_AMBIENT_RAISE,
                        cap as libc::c_ulong,
                        0,
                        0,
                    ) != 0
                {
                    return Err((6, errno()));
                }
            }
        }
    }
    Ok(())
}

/// Root to `uid`/`gid`: bounding set cut to `keep`, groups, gids, then uids with the permitted
/// set kept (PR_SET_KEEPCAPS) for the caller to cut.
///
/// # Safety
/// Raw system calls only (async-signal-safe); changes the calling thread's credentials.
unsafe fn switch_ids(uid: u32, gid: u32, keep: u64, last: u32) -> Result<(), (u64, i32)> {
    // SAFETY: plain system calls on this thread's credentials, with pointers to locals that
    // outlive them.
    unsafe {
        // 1. The bounding set (needs CAP_SETPCAP: before the uid changes).
        for cap in 0..=last.min(63) {
            if keep & (1u64 << cap) == 0
                && libc::prctl(PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
            {
                return Err((1, errno()));
            }
        }
        let groups = [gid];
        if libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()) != 0 {
            return Err((2, errno()));
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err((3, errno()));
        }
        // 2. Keep the permitted set across the uid change, then cut it to `keep`.
        if libc::prctl(PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            return Err((4, errno()));
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err((5, errno()));
        }
        if libc::prctl(PR_SET_KEEPCAPS, 0 as libc::c_ulong, 0, 0, 0) != 0 {
            return Err((4, errno()));
        }
    }
    Ok(())
}

extern "C" fn on_switch_signal(_: libc::c_int) {
    let saved = errno();
    if let Err((step, e)) = switch_this_thread() {
        let _ = FAILED.compare_exchange(
            0,
            (step << 32) | e as u32 as u64,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    // SAFETY: restores the interrupted code's errno (the handler's calls may have set it).
    unsafe { *libc::__errno_location() = saved };
}

fn failed() -> anyhow::Result<()> {
    let f = FAILED.load(Ordering::SeqCst);
    if f == 0 {
        return Ok(());
    }
    let step = STEPS.get((f >> 32) as usize).copied().unwrap_or("?");
    bail!(
        "{step} failed: {}",
        std::io::Error::from_raw_os_error((f & 0xffff_ffff) as i32)
    )
}

/// The credentials of thread `tid` as /proc shows them: (uids, gids, CapEff, CapPrm).
pub fn thread_creds(status: &str) -> Option<([u32; 4], [u32; 4], u64, u64)> {
    let ids = |key: &str| -> Option<[u32; 4]> {
        let l = status.lines().find(|l| l.starts_with(key))?;
        let v: Vec<u32> = l[key.len()..]
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        v.try_into().ok()
    };
    let cap = |key: &str| -> Option<u64> {
        let l = status.lines().find(|l| l.starts_with(key))?;
        u64::from_str_radix(l[key.len()..].trim(), 16).ok()
    };
    Some((ids("Uid:")?, ids("Gid:")?, cap("CapEff:")?, cap("CapPrm:")?))
}

/// Switches every thread of the process to `id`, keeping `plan`'s capabilities; fails naming
/// the step (and errno) or the thread that did not switch.
pub fn switch(id: &Identity, plan: &CapPlan) -> anyhow::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    T_UID.store(id.uid, Ordering::SeqCst);
    T_GID.store(id.gid, Ordering::SeqCst);
    T_KEEP.store(plan.mask(), Ordering::SeqCst);
    T_AMBIENT.store(plan.ambient, Ordering::SeqCst);
    T_LAST_CAP.store(last, Ordering::SeqCst);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && euid != id.uid {
        bail!(
            "started as uid {euid}, neither root nor {} (uid {}): cannot switch",
            id.user,
            id.uid
        );
    }
    T_FROM_ROOT.store(euid == 0, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    let signo = libc::SIGRTMIN() + 4;
    // SAFETY: installs a handler that only makes raw system calls and atomic stores.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_switch_signal as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(signo, &sa, std::ptr::null_mut()) != 0 {
            bail!(
                "installing the switch signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    // This thread first: if it cannot switch, no other one has.
    switch_this_thread().map_err(|(step, e)| {
        anyhow::anyhow!(
            "{} failed: {}",
            STEPS.get(step as usize).copied().unwrap_or("?"),
            std::io::Error::from_raw_os_error(e)
        )
    })?;
    // SAFETY: getpid/gettid have no preconditions.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let want = |c: &([u32; 4], [u32; 4], u64, u64)| {
        c.0.iter().all(|&u| u == id.uid)
            && c.1.iter().all(|&g| g == id.gid)
            && c.2 == plan.mask()
            && c.3 == plan.mask()
    };
    let started = Instant::now();
    let mut signalled: Vec<(i32, Instant)> = Vec::new();
    loop {
        failed()?;
        let mut pending = Vec::new();
        let tasks = std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")?;
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if tid == me {
                continue;
            }
            // A thread that ended meanwhile has no status: nothing to switch.
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            if thread_creds(&status).is_some_and(|c| want(&c)) {
                continue;
            }
            pending.push(tid);
            let due = match signalled.iter().find(|(t, _)| *t == tid) {
                None => true,
                // Signalled and not switched after 100 ms: once more (a handler that has not
                // run yet is harmless to ask twice).
                Some((_, at)) => at.elapsed() > Duration::from_millis(100),
            };
            if due {
                // SAFETY: tgkill to a thread of our own process.
                let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signo) };
                if rc != 0 && errno() != libc::ESRCH {
                    bail!(
                        "signalling thread {tid} to switch: {}",
                        std::io::Error::last_os_error()
                    );
                }
                signalled.retain(|(t, _)| *t != tid);
                signalled.push((tid, Instant::now()));
            }
        }
        if pending.is_empty() {
            return failed();
        }
        if started.elapsed() > Duration::from_secs(3) {
            let names: Vec<String> = pending
                .iter()
                .map(|t| {
                    let comm = std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
                        .unwrap_or_default();
                    format!("{t} ({})", comm.trim())
                })
                .collect();
            bail!("thread(s) {} did not switch within 3 s", names.join(", "));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// After the switch: what the user cannot do that the running daemon will want (read the
/// configuration for a reload), as warnings.
pub fn warn_unreadable(config: &Path, id: &Identity) {
    if let Err(e) = std::fs::File::open(config) {
        tracing::warn!(
            "server.user = {}: the configuration {} is not readable by the user ({e}): a \
             reload (SIGHUP, ctl reload) will fail until it is",
            id.user,
            config.display()
        );
    }
}

/// Without `server.user`, a daemon that runs as root, or holds capabilities (started by a
/// unit with `AmbientCapabilities=`), says so once: it keeps them for its whole life.
pub fn warn_if_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| thread_creds(&s))
        .map_or(0, |c| c.2);
    if root || caps != 0 {
        tracing::warn!(
            "running as {} with capabilities {caps:#x} for the daemon's whole life: set \
             `[server] user` (and `group`) to switch to an unprivileged account and drop them \
             after start-up (see docs/configuration.md, Privileges)",
            if root { "root" } else { "a user" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_caps_per_mode() {
        assert_eq!(runtime_caps(false, false).mask(), 0);
        assert_eq!(runtime_caps(false, false).names(), "none");
        let udp = runtime_caps(true, false);
        assert_eq!(udp.mask(), 1 << 12);
        assert!(!udp.ambient);
        assert!(runtime_caps(true, true).ambient);
    }

    #[test]
    fn privilege_proc_status_parse() {
        let s = "Name:\txdhcpd\nUid:\t998\t998\t998\t998\nGid:\t997\t997\t997\t997\n\
                 CapInh:\t0000000000000000\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n";
        assert_eq!(thread_creds(s), Some(([998; 4], [997; 4], 0x1000, 0x1000)));
        assert_eq!(thread_creds("Uid:\t1\n"), None);
    }

    #[test]
    fn privilege_unknown_user_is_a_config_error_with_position() {
        let text = "[server]\ninterface = \"eth0\"\nuser = \"no-such-user-xdhcpd\"\n\
                    [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
        let cfg = xdhcpd_config::parse(text, "t.toml").expect("valid");
        let err = resolve(&cfg).expect_err("unknown user");
        assert_eq!(
            err.to_string(),
            "t.toml:3:8: server.user: no such user `no-such-user-xdhcpd` on this system"
        );
        let text = "[server]\ninterface = \"eth0\"\nuser = \"root\"\ngroup = \"no-such-group-x\"\n\
                    [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
        let cfg = xdhcpd_config::parse(text, "t.toml").expect("valid");
        let err = resolve(&cfg).expect_err("unknown group");
        assert_eq!(
            err.to_string(),
            "t.toml:4:9: server.group: no such group `no-such-group-x` on this system"
        );
        let text = "[server]\ninterface = \"eth0\"\nuser = \"root\"\n\
                    [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
        let cfg = xdhcpd_config::parse(text, "t.toml").expect("valid");
        let err = resolve(&cfg).expect_err("root");
        assert!(err.to_string().contains("is root (uid 0)"), "{err}");
    }
}
