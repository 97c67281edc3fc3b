//! `cargo xtask setup`: install what building, testing and the demo need. Idempotent, and
//! quick when nothing is missing (each step checks first and says what it found).
use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{ebpf::NIGHTLY, util};

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Skip the Debian packages (only set up the Rust side).
    #[arg(long)]
    pub no_apt: bool,
}

/// Debian packages used by the tests and the demo (peers, clients, capture, BPF inspection).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "kea-dhcp4-server",
    // The DHCPv6 peer of `cargo xtask bench --systems kea-dhcp6`.
    "kea-dhcp6-server",
    "kea-admin",
    "isc-dhcp-server",
    "isc-dhcp-client",
    "dhcpcd",
    "busybox",
    "tcpdump",
    "bpftool",
    "iproute2",
    // The failover guard of `--io udp` mode (`nft`).
    "nftables",
    // The metrics test scrapes the daemon with a real Prometheus (`userspace/tests/api_ns.rs`).
    "prometheus",
    // systemd-analyze verify of packaging/systemd/xdhcpd.service (man: its Documentation=).
    "systemd",
    "man-db",
    // Registrations in PostgreSQL: the follower's test runs a real server
    // (`userspace/tests/registration_postgres_ns.rs`, /usr/lib/postgresql/15/bin).
    "postgresql",
    // Lease events on NATS JetStream: the sink's test runs a real `nats-server -js`
    // (`userspace/tests/events_nats_ns.rs`).
    "nats-server",
    // The TLS tests make their test CA and server certificates with the openssl CLI
    // (`userspace/tests/tls_backends_ns.rs`).
    "openssl",
];

/// bpf-linker versions verified with our nightly (see the notes on the build machine).
const BPF_LINKER_VERSION: &str = "~0.13";

/// cargo-fuzz versions verified with our nightly (`cargo xtask fuzz`).
const CARGO_FUZZ_VERSION: &str = "~0.13";

/// How long to wait for a `cargo install bpf-linker` started by someone else.
const CONCURRENT_INSTALL_WAIT: Duration = Duration::from_secs(15 * 60);

pub fn setup(args: &SetupArgs) -> Result<()> {
    nightly_with_rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    if args.no_apt {
        println!("debian packages: skipped (--no-apt)");
    } else {
        debian_packages()?;
    }
    println!("setup: done");
    Ok(())
}

fn nightly_with_rust_src() -> Result<()> {
    let rustup = util::rustup()?;
    if !util::succeeds(Command::new(&rustup).args(["run", NIGHTLY, "rustc", "-V"])) {
        println!("rust: the {NIGHTLY} toolchain is missing; installing it");
        util::run(Command::new(&rustup).args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let installed = util::output(Command::new(&rustup).args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("rust: {NIGHTLY} with rust-src present");
    } else {
        util::run(Command::new(&rustup).args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
    }
    Ok(())
}

/// cargo-fuzz for `cargo xtask fuzz` (runs under the nightly toolchain).
fn cargo_fuzz() -> Result<()> {
    let rustup = util::rustup()?;
    let version = |r: &Path| {
        util::output(Command::new(r).args(["run", NIGHTLY, "cargo", "fuzz", "--version"]))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    if let Some(v) = version(&rustup) {
        println!("cargo-fuzz: present ({v})");
        return Ok(());
    }
    println!("cargo-fuzz: installing (about a minute)");
    let mut cmd = Command::new(util::cargo());
    cmd.args(["install", "cargo-fuzz", "--locked", "--version"])
        .arg(CARGO_FUZZ_VERSION);
    util::run(&mut cmd)?;
    match version(&rustup) {
        Some(v) => {
            println!("cargo-fuzz: installed ({v})");
            Ok(())
        }
        None => bail!("cargo-fuzz was installed but `cargo +{NIGHTLY} fuzz --version` fails; is ~/.cargo/bin on PATH?"),
    }
}

fn bpf_linker_version() -> Option<String> {
    util::output(Command::new("bpf-linker").arg("--version"))
        .ok()
        .map(|v| v.trim().to_owned())
}

/// bpf-linker built against the LLVM inside the nightly toolchain: its default feature wants
/// a newer LLVM than the nightly's, so we point `LLVM_PREFIX` at a folder whose `lib/` links
/// to the nightly's libLLVM (that folder is also the binary's RUNPATH).
fn bpf_linker() -> Result<()> {
    if let Some(version) = bpf_linker_version() {
        println!("bpf-linker: present ({version})");
        return Ok(());
    }
    if wait_for_concurrent_install()? {
        if let Some(version) = bpf_linker_version() {
            println!("bpf-linker: present after the other install ({version})");
            return Ok(());
        }
    }

    let rustup = util::rustup()?;
    let verbose = util::output(Command::new(&rustup).args(["run", NIGHTLY, "rustc", "-vV"]))?;
    let llvm_major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .with_context(|| format!("no `LLVM version: N.x` line in `rustc +{NIGHTLY} -vV`"))?
        .to_owned();
    let sysroot =
        util::output(Command::new(&rustup).args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    let sysroot_lib = Path::new(sysroot.trim()).join("lib");
    let libllvm = find_libllvm(&sysroot_lib)?;
    let prefix = cache_dir()?.join("xdhcpd-llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let file_name = libllvm
        .file_name()
        .context("libLLVM path without a file name")?;
    // libLLVM.so for linking; the versioned name for the loader at run time (RUNPATH).
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(file_name)] {
        ensure_symlink(&libllvm, &link)?;
    }
    println!(
        "bpf-linker: building against LLVM {llvm_major} from {} (about 3 minutes)",
        libllvm.display()
    );
    let mut cmd = Command::new(&rustup);
    cmd.args([
        "run",
        NIGHTLY,
        "cargo",
        "install",
        "bpf-linker",
        "--version",
    ])
    .arg(BPF_LINKER_VERSION)
    .args(["--no-default-features", "--features"])
    .arg(format!("llvm-{llvm_major}"))
    .env("LLVM_PREFIX", &prefix);
    if util::which("bpf-linker").is_some() {
        // Present but broken (e.g. the nightly's libLLVM changed): rebuild it.
        cmd.arg("--force");
    }
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "CARGO",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    util::run(&mut cmd)?;
    match bpf_linker_version() {
        Some(version) => {
            println!("bpf-linker: installed ({version})");
            Ok(())
        }
        None => bail!(
            "bpf-linker was installed but `bpf-linker --version` fails; is ~/.cargo/bin on PATH \
             and does {} exist?",
            prefix_lib.join(file_name).display()
        ),
    }
}

/// The real libLLVM shared library in the toolchain's `lib/` (not the small linker script).
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && name.to_string_lossy().starts_with("libLLVM.so.") {
            return Ok(entry.path());
        }
    }
    bail!(
        "no libLLVM.so.* in {}: the {NIGHTLY} toolchain does not ship LLVM as a shared library",
        dir.display()
    )
}

fn ensure_symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("replacing {}", link.display()))?;
    }
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
    println!("linked {} -> {}", link.display(), target.display());
    Ok(())
}

fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache"))
        .context("neither XDG_CACHE_HOME nor HOME is set")
}

/// Waits while another `cargo install bpf-linker` runs (two concurrent installs would fight
/// over the same binary). Returns whether there was one.
fn wait_for_concurrent_install() -> Result<bool> {
    let start = Instant::now();
    let mut waited = false;
    while let Some(pid) = running_bpf_linker_install() {
        if start.elapsed() > CONCURRENT_INSTALL_WAIT {
            bail!(
                "another `cargo install bpf-linker` (pid {pid}) is still running after 15 minutes"
            );
        }
        if !waited {
            println!("bpf-linker: another install is running (pid {pid}); waiting for it");
            waited = true;
        }
        thread::sleep(Duration::from_secs(5));
    }
    Ok(waited)
}

/// Pid of a running `cargo install ... bpf-linker`, if any.
fn running_bpf_linker_install() -> Option<u32> {
    let own = std::process::id();
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        if pid == own {
            return None;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_cargo = args.first().is_some_and(|a| a.ends_with(b"cargo"));
        let installs = args.iter().any(|a| *a == b"install");
        let linker = args.iter().any(|a| *a == b"bpf-linker");
        (is_cargo && installs && linker).then_some(pid)
    })
}

fn debian_packages() -> Result<()> {
    if util::which("dpkg-query").is_none() {
        println!("debian packages: skipped (no dpkg-query: not a Debian system)");
        return Ok(());
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if missing.is_empty() {
        println!(
            "debian packages: all present ({})",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "missing Debian packages: {}; run as root or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("debian packages: installing {}", missing.join(" "));
    util::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = missing
        .into_iter()
        .filter(|p| !package_installed(p))
        .collect();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these packages are still missing: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn package_installed(package: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}
