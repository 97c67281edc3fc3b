//! RFC 7724 leasequery over TLS (DHCPTLS, then a TLS handshake on the same TCP connection)
//! against the real daemon in network namespaces (root; see `common/require.rs`), XDP data
//! path, with a test PKI made by `openssl`: a CA that signed the server's certificate (IP
//! 10.77.0.1) and an access device's client certificate, and an unrelated CA that signed a
//! rogue client certificate. The daemon has `[bulk-leasequery] tls = "require"` with
//! `client-ca-file` = the first CA:
//! - an active subscriber over TLS (`xdhcpd leasequery --active --tls-*`) sees every change
//!   of an `xdhcp-loadgen` run (each ACK covered by an ACTIVE line for that address and client
//!   ending no earlier), per address in order; a bulk leasequery over TLS returns every ACKed
//!   address;
//! - a requestor that does not ask for TLS is refused (DHCPLEASEQUERYDONE NotAllowed, "TLS
//!   required"), counted `tls_required`;
//! - a client certificate signed by the other CA, and no client certificate at all, fail the
//!   handshake, counted `tls_failed`; a requestor whose `--tls-ca-file` did not sign the
//!   server's certificate refuses the server (its error names `--tls-ca-file`);
//! - every handshake that completed is counted `tls_established`.
//!
//! Needs root (namespaces, XDP), `ip`, `openssl`.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use lease_common::{parse_ack, Ack};
use require::{require, Capability};

/// The requestor's address: the only one allowed to ask.
const ASKER: &str = "10.77.0.9";

/// The test PKI.
struct Pki {
    /// Signed the server's certificate and `dev`.
    ca: PathBuf,
    /// Signed `rogue` only.
    other_ca: PathBuf,
    srv_cert: PathBuf,
    srv_key: PathBuf,
    /// The access device's client certificate (signed by `ca`).
    dev_cert: PathBuf,
    dev_key: PathBuf,
    /// A client certificate signed by `other_ca`.
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Res<()> {
    let out = output(
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir),
    )?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(())
}

/// A CA key and self-signed certificate `<name>.key` / `<name>.crt` in `dir`.
fn make_ca(dir: &Path, name: &str) -> Res<PathBuf> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
        ],
    )?;
    Ok(dir.join(format!("{name}.crt")))
}

/// A key and a certificate `<name>.key` / `<name>.crt` signed by CA `ca`, with extensions
/// `ext`.
fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) -> Res<(PathBuf, PathBuf)> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    write_file(&dir.join(format!("{name}.ext")), ext)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    )?;
    Ok((
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    ))
}

fn make_pki(dir: &Path) -> Res<Pki> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = make_ca(dir, "lq-ca")?;
    let other_ca = make_ca(dir, "other-ca")?;
    let (srv_cert, srv_key) = make_leaf(
        dir,
        "lq-ca",
        "srv",
        &format!(
            "subjectAltName = IP:{SRV_ADDR}\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n"
        ),
    )?;
    let client_ext = "subjectAltName = DNS:olt-1.access.example\nbasicConstraints = CA:FALSE\n\
                      keyUsage = digitalSignature\nextendedKeyUsage = clientAuth\n";
    let (dev_cert, dev_key) = make_leaf(dir, "lq-ca", "dev", client_ext)?;
    let (rogue_cert, rogue_key) = make_leaf(dir, "other-ca", "rogue", client_ext)?;
    Ok(Pki {
        ca,
        other_ca,
        srv_cert,
        srv_key,
        dev_cert,
        dev_key,
        rogue_cert,
        rogue_key,
    })
}

fn config(bed: &Bed, pki: &Pki, mode: &str, range: &str) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
control-socket = "{sock}"
leasequery-allow = ["{ASKER}"]

[bulk-leasequery]
listen = "{SRV_ADDR}:67"
max-connections = 8
idle-timeout = 10
active-queue = 16384
tls = "{mode}"
cert-file = "{cert}"
key-file = "{key}"
client-ca-file = "{ca}"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
[[subnet.pool]]
range = "{range}"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        cert = pki.srv_cert.display(),
        key = pki.srv_key.display(),
        ca = pki.ca.display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// `--tls-ca-file CA [--tls-cert-file C --tls-key-file K]`.
fn tls_args(ca: &Path, client: Option<(&Path, &Path)>) -> Vec<String> {
    let mut v = vec!["--tls-ca-file".to_string(), ca.display().to_string()];
    if let Some((c, k)) = client {
        v.extend([
            "--tls-cert-file".to_string(),
            c.display().to_string(),
            "--tls-key-file".to_string(),
            k.display().to_string(),
        ]);
    }
    v
}

/// `xdhcpd leasequery --bulk --all` from the client namespace with `extra` arguments.
fn bulk(bed: &Bed, extra: &[String]) -> Res<Output> {
    let bin = xdhcpd_bin()?;
    let mut cmd = bed.cli.command(&bin.to_string_lossy());
    cmd.args([
        "leasequery",
        "--bulk",
        "--all",
        "--server",
        SRV_ADDR,
        "--timeout-ms",
        "5000",
    ])
    .args(extra);
    output(&mut cmd)
}

/// One binding line of a subscriber: address, client id, lease end (ACTIVE only).
struct Line {
    active: bool,
    addr: Ipv4Addr,
    client: Option<String>,
    expiry: Option<u32>,
}

fn parse_lines(text: &str) -> Vec<Line> {
    let mut v = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let active = match w.next() {
            Some("ACTIVE") => true,
            Some("UNASSIGNED") => false,
            _ => continue,
        };
        let Some(addr) = w.next().and_then(|a| a.parse().ok()) else {
            continue;
        };
        let mut line = Line {
            active,
            addr,
            client: None,
            expiry: None,
        };
        for f in w {
            if let Some(c) = f.strip_prefix("client-id=") {
                line.client = Some(c.to_string());
            } else if let Some(e) = f.strip_prefix("expiry=") {
                line.expiry = e.parse().ok();
            }
        }
        v.push(line);
    }
    v
}

/// ACKs not covered by an ACTIVE line for that address and client ending no earlier.
fn uncovered<'a>(acks: &'a [Ack], lines: &[Line]) -> Vec<&'a Ack> {
    let mut best: HashMap<(Ipv4Addr, &str), u32> = HashMap::new();
    for l in lines.iter().filter(|l| l.active) {
        if let (Some(c), Some(e)) = (&l.client, l.expiry) {
            let b = best.entry((l.addr, c.as_str())).or_insert(0);
            *b = (*b).max(e);
        }
    }
    acks.iter()
        .filter(|a| {
            best.get(&(a.addr, a.client.as_str()))
                .is_none_or(|&e| e < a.min_expiry())
        })
        .collect()
}

/// Addresses whose ACTIVE lines go back in time for the same client.
fn out_of_order(lines: &[Line]) -> Vec<Ipv4Addr> {
    let mut last: HashMap<(Ipv4Addr, String), u32> = HashMap::new();
    let mut bad = Vec::new();
    for l in lines.iter().filter(|l| l.active) {
        let (Some(c), Some(e)) = (&l.client, l.expiry) else {
            continue;
        };
        let prev = last.entry((l.addr, c.clone())).or_insert(0);
        if e < *prev {
            bad.push(l.addr);
        }
        *prev = (*prev).max(e);
    }
    bad
}

fn metrics(bed: &Bed) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        std::process::Command::new(&bin)
            .args(["ctl", "--socket"])
            .arg(bed.path("ctl.sock"))
            .arg("metrics"),
    )?;
    Ok(out.stdout)
}

fn event(bed: &Bed, e: &str) -> Res<u64> {
    let text = metrics(bed)?;
    let key = format!("xdhcpd_bulk_leasequery_total{{event=\"{e}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key).map(str::trim))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no {key} in the metrics:\n{text}"))
}

fn subscribers(bed: &Bed) -> Res<u64> {
    let text = metrics(bed)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("xdhcpd_active_leasequery_subscribers ")
                .map(str::trim)
        })
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no subscriber gauge in the metrics:\n{text}"))
}

/// The requestor failed, and its error says `want` (each of them).
fn refused(what: &str, out: &Output, want: &[&str]) -> Res<()> {
    if out.status.success() {
        return Err(format!(
            "{what}: the requestor was answered: {}",
            out.stdout.lines().last().unwrap_or("")
        ));
    }
    for w in want {
        if !out.stderr.contains(w) {
            return Err(format!(
                "{what}: the error does not say {w:?}: {}",
                out.stderr
            ));
        }
    }
    Ok(())
}

#[test]
fn leasequery_tls_ns_subscriber_over_tls_and_refusals_counted() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("openssl"),
    ]) {
        return Ok(());
    }
    let started = Instant::now();
    let lg = lease_common::loadgen_bin()?;
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    let pki = make_pki(&bed.path("pki"))?;
    let cfg = config(&bed, &pki, "require", "10.77.1.1-10.77.4.255")?;
    let mut daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    if !bed.srv_has_xdp()? {
        return Err("the XDP program is not attached: the test must cross it".into());
    }
    let dev = Some((pki.dev_cert.as_path(), pki.dev_key.as_path()));

    // 1. A subscriber over TLS with the access device's certificate.
    let bin = xdhcpd_bin()?;
    let sub_log = bed.path("subscriber.out");
    let mut args: Vec<String> = [
        "leasequery",
        "--active",
        "--server",
        SRV_ADDR,
        "--timeout-ms",
        "5000",
        "--duration-s",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tls_args(&pki.ca, dev));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sub = bed.spawn_client(
        "TLS subscriber",
        &bin.to_string_lossy(),
        &arg_refs,
        &sub_log,
    )?;
    wait_for("the TLS subscriber", Duration::from_secs(10), || {
        sub.check_alive()?;
        Ok((subscribers(&bed)? == 1).then_some(()))
    })?;
    assert_eq!(event(&bed, "tls_established")?, 1, "one handshake so far");

    let acked = bed.path("acked.log");
    let out = output(bed.cli.command("timeout").args([
        "60",
        &lg.to_string_lossy(),
        "-i",
        bed.cli_if(),
        "--io",
        "packet",
        "--scenario",
        "dora-renew",
        "--clients",
        "300",
        "--rate",
        "300",
        "--duration",
        "3s",
        "--timeout-ms",
        "1000",
        "--retries",
        "2",
        "--quiet",
        "--acked-log",
        &acked.to_string_lossy(),
    ]))?;
    let acks: Vec<Ack> = read_text(&acked)
        .map_err(|e| format!("{e}; loadgen: {} {}", out.stdout, out.stderr))?
        .lines()
        .map(parse_ack)
        .collect::<Res<_>>()?;
    let addrs: BTreeSet<Ipv4Addr> = acks.iter().map(|a| a.addr).collect();
    if addrs.len() < 250 {
        return Err(format!(
            "only {} addresses ACKed ({} ACKs): {} {}",
            addrs.len(),
            acks.len(),
            out.stdout,
            out.stderr
        ));
    }
    wait_for(
        "the TLS subscriber to cover every ACK",
        Duration::from_secs(20),
        || {
            sub.check_alive()?;
            let lines = parse_lines(&read_text(&sub_log)?);
            Ok(uncovered(&acks, &lines).is_empty().then_some(()))
        },
    )
    .map_err(|e| {
        let lines = parse_lines(&read_text(&sub_log).unwrap_or_default());
        format!(
            "{e}: {} of {} ACKs missed; subscriber output:\n{}",
            uncovered(&acks, &lines).len(),
            acks.len(),
            read_text(&sub_log)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("ACTIVE"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let lines = parse_lines(&read_text(&sub_log)?);
    let bad = out_of_order(&lines);
    assert!(bad.is_empty(), "lease ends went back for {bad:?}");
    let sub_text = read_text(&sub_log)?;
    assert!(
        !sub_text.contains("RECONNECT"),
        "the TLS subscriber lost its connection:\n{sub_text}"
    );

    // 2. A bulk leasequery over TLS: every ACKed address.
    let out = bulk(&bed, &tls_args(&pki.ca, dev))?;
    if !out.status.success() {
        return Err(format!(
            "bulk leasequery over TLS failed: {}{}",
            out.stdout, out.stderr
        ));
    }
    let got: BTreeSet<Ipv4Addr> = parse_lines(&out.stdout)
        .iter()
        .filter(|l| l.active)
        .map(|l| l.addr)
        .collect();
    assert!(
        addrs.is_subset(&got),
        "{} ACKed addresses missing from the bulk answer over TLS",
        addrs.difference(&got).count()
    );
    assert!(out.stdout.contains(" over TLS in "), "{}", out.stdout);
    assert_eq!(event(&bed, "tls_established")?, 2);

    // 3-5: the refusals, each checked even when another failed (so that a run without the
    // rules shows every check that depends on them).
    let mut problems: Vec<String> = Vec::new();
    let mut check = |what: &str, r: Res<()>| {
        if let Err(e) = r {
            problems.push(format!("{what}: {e}"));
        }
    };
    // 3. In clear under tls = "require": NotAllowed, counted.
    let out = bulk(&bed, &[])?;
    check(
        "in clear",
        refused("a query in clear", &out, &["NotAllowed", "TLS required"]),
    );
    check(
        "tls_required counted",
        wait_for("tls_required", Duration::from_secs(5), || {
            Ok((event(&bed, "tls_required")? == 1).then_some(()))
        }),
    );

    // 4. A client certificate of another CA, and none: the handshake fails, counted.
    let failed0 = event(&bed, "tls_failed")?;
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    let out = bulk(&bed, &tls_args(&pki.ca, rogue))?;
    check(
        "rogue client certificate",
        refused("a client certificate of another CA", &out, &[]),
    );
    check(
        "tls_failed counted (rogue)",
        wait_for("tls_failed", Duration::from_secs(5), || {
            Ok((event(&bed, "tls_failed")? == failed0 + 1).then_some(()))
        }),
    );
    let failed1 = event(&bed, "tls_failed")?;
    let out = bulk(&bed, &tls_args(&pki.ca, None))?;
    check(
        "no client certificate",
        refused("no client certificate", &out, &[]),
    );
    check(
        "tls_failed counted (none)",
        wait_for("tls_failed", Duration::from_secs(5), || {
            Ok((event(&bed, "tls_failed")? == failed1 + 1).then_some(()))
        }),
    );
    // 5. The requestor refuses a server its CA file did not sign.
    let failed2 = event(&bed, "tls_failed")?;
    let out = bulk(&bed, &tls_args(&pki.other_ca, dev))?;
    check(
        "server of another CA",
        refused(
            "a server certificate of another CA",
            &out,
            &["TLS handshake", "--tls-ca-file"],
        ),
    );
    check(
        "tls_failed counted (server refused)",
        wait_for("tls_failed", Duration::from_secs(5), || {
            Ok((event(&bed, "tls_failed")? == failed2 + 1).then_some(()))
        }),
    );
    // None of the refused ones got a handshake through; the subscriber is still there.
    let established = event(&bed, "tls_established")?;
    check(
        "no refused handshake completed",
        (established == 2)
            .then_some(())
            .ok_or(format!("tls_established = {established}, not 2")),
    );
    let accepted = event(&bed, "tls_accepted")?;
    check(
        "every DHCPTLS answered Success",
        (accepted == 5)
            .then_some(())
            .ok_or(format!("tls_accepted = {accepted}, not 5")),
    );
    if !problems.is_empty() {
        return Err(format!(
            "{} refusal checks failed:\n{}",
            problems.len(),
            problems.join("\n")
        ));
    }
    assert_eq!(subscribers(&bed)?, 1);
    sub.check_alive()?;

    eprintln!(
        "leasequery_tls_ns: {} ACKs, {} addresses, subscriber saw {} changes over TLS; {:?}",
        acks.len(),
        addrs.len(),
        lines.len(),
        started.elapsed()
    );
    sub.signal(libc::SIGTERM)?;
    let _ = sub.wait_exit(Duration::from_secs(5));
    daemon.check_alive()?;
    daemon.stop()?;
    Ok(())
}

/// Figures for benches/RESULTS.md (ignored; by hand): a bulk leasequery of every address of a
/// 51,000-address pool, in clear and over TLS (`tls = "offer"`), three times each, wall time
/// as the requestor reports it.
#[test]
#[ignore]
fn leasequery_tls_ns_bulk_rate() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("openssl"),
    ]) {
        return Ok(());
    }
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    let pki = make_pki(&bed.path("pki"))?;
    let cfg = config(&bed, &pki, "offer", "10.77.1.1-10.77.200.255")?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let dev = Some((pki.dev_cert.as_path(), pki.dev_key.as_path()));
    for round in 0..3 {
        for (what, extra) in [("clear", Vec::new()), ("tls", tls_args(&pki.ca, dev))] {
            let out = bulk(&bed, &extra)?;
            if !out.status.success() {
                return Err(format!("{what}: {}{}", out.stdout, out.stderr));
            }
            eprintln!(
                "round {round} {what}: {}",
                out.stdout.lines().last().unwrap_or("")
            );
        }
    }
    eprintln!(
        "{}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
    );
    daemon.stop()?;
    Ok(())
}
