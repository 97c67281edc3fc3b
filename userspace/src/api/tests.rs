//! The router against its OpenAPI document, and every route over a real socket with a
//! table and configuration of its own (no workers, no failover, no reload).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;

use lease_store::{LeaseTable, OpenOptions, PoolSpec};

use super::client::{call, Endpoint};
use super::{ApiServer, ApiState, Listen, ROUTES};

const OPENAPI: &str = include_str!("../../openapi.yaml");

/// (METHOD, path) of every operation under `paths:` of the document.
fn openapi_operations(doc: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in doc.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 2 && t.ends_with(':') {
            path = Some(t.trim_end_matches(':').to_string());
        } else if indent == 4 {
            let m = t.trim_end_matches(':');
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                if let Some(p) = &path {
                    ops.insert((m.to_uppercase(), p.clone()));
                }
            }
        }
    }
    ops
}

#[test]
fn api_openapi_lists_exactly_the_routes() {
    let doc = openapi_operations(OPENAPI);
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(routes.len(), ROUTES.len(), "a route listed twice");
    let missing: Vec<_> = routes.difference(&doc).collect();
    let extra: Vec<_> = doc.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi.yaml differs from the router: not documented {missing:?}, documented but not \
         routed {extra:?}"
    );
}

const CONFIG: &str = "[server]\ninterface = \"lo\"\n[[subnet]]\ncidr = \"10.9.0.0/24\"\n\
                      pool = [{ range = \"10.9.0.10-10.9.0.19\" }]\n\
                      [[subnet]]\ncidr = \"10.8.0.0/24\"\npool = [{ range = \"10.8.0.10-10.8.0.11\" }]\n";

struct Fixture {
    _dir: tempfile::TempDir,
    server: ApiServer,
    table: Arc<LeaseTable>,
}

fn start(tcp: Option<(std::net::SocketAddr, Option<String>)>) -> Fixture {
    start_with(tcp, None)
}

fn start_with(
    tcp: Option<(std::net::SocketAddr, Option<String>)>,
    registrations: Option<crate::control::Handler>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = xdhcpd_config::parse(CONFIG, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (t, _) =
        LeaseTable::open(&dir.path().join("l.db"), &pools, &OpenOptions::default()).unwrap();
    let table = Arc::new(t);
    let state = ApiState {
        config: Arc::new(cfg).into(),
        interface: "lo".into(),
        server_id: "10.9.0.1".parse().unwrap(),
        io: "udp",
        table: table.clone(),
        engine_stats: vec![Arc::default()],
        workers: vec![Arc::default()],
        committer: Some(Arc::default()),
        xdp: None,
        failover: Vec::new(),
        registrations,
        registrations_pg: None,
        reload: None,
        started: Instant::now(),
        started_unix: lease_store::unix_now(),
        metrics: true,
        alarms: None,
        events: None,
        reconfigure: None,
        known_macs: None,
        refused: Default::default(),
        bulk_leasequery: None,
        relay_health: None,
    };
    let listen = Listen {
        socket: dir.path().join("api.sock"),
        tcp,
    };
    let server = ApiServer::start(&listen, Arc::new(state)).unwrap();
    Fixture {
        _dir: dir,
        server,
        table,
    }
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "0")
        .replace("{ip}", "10.9.0.12")
        .replace("{mac}", "02-00-00-00-00-01")
        .replace("{client_id}", "01-02-00-00-00-00-01")
}

#[test]
fn api_every_route_answers_on_the_socket_with_json_errors() {
    let f = start(None);
    let ep = Endpoint::Unix(f.server.socket().to_path_buf());
    let mode = std::fs::metadata(f.server.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode");
    for (m, p) in ROUTES {
        let a = call(&ep, m, &concrete(p), None).unwrap();
        assert_ne!(a.status, 405, "{m} {p}: {}", a.reason());
        assert!(
            !a.reason().starts_with("no such endpoint"),
            "{m} {p} not routed: {}",
            a.reason()
        );
        if a.status >= 400 {
            // Every error is JSON with a reason.
            let v = a.json().unwrap();
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{m} {p}: {v}"
            );
        }
    }
    let get = |p: &str| call(&ep, "GET", p, None).unwrap();
    let post = |p: &str, b: &[u8]| call(&ep, "POST", p, Some(b)).unwrap();

    let s = get("/v1/status").json().unwrap();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["pools"], 2);
    assert!(s["failover"].is_null());

    // A lease written to the table shows up at once in every view.
    let slot = f.table.slot_of("10.9.0.12".parse().unwrap()).unwrap();
    f.table.update(slot, |l| {
        l.state = lease_store::LeaseState::Active;
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        l.client = lease_store::ClientKey::from_client_id(&[1, 2, 0, 0, 0, 0, 1]);
        l.start = 1_700_000_000;
        l.expiry = u32::MAX - 1;
    });
    let one = |p: &str| {
        let a = get(p);
        assert_eq!(a.status, 200, "{p}: {}", a.reason());
        let v = a.json().unwrap();
        assert_eq!(v["leases"].as_array().map(Vec::len), Some(1), "{p}: {v}");
        v["leases"][0].clone()
    };
    assert_eq!(one("/v1/leases/ip/10.9.0.12")["state"], "active");
    assert_eq!(
        one("/v1/leases/mac/02:00:00:00:00:01")["address"],
        "10.9.0.12"
    );
    assert_eq!(one("/v1/leases/mac/020000000001")["address"], "10.9.0.12");
    assert_eq!(
        one("/v1/leases/client-id/01-02-00-00-00-00-01")["address"],
        "10.9.0.12"
    );
    assert_eq!(one("/v1/leases/ip/10.9.0.13")["state"], "free");
    let page = get("/v1/pools/0/leases").json().unwrap();
    assert_eq!(page["leases"].as_array().map(Vec::len), Some(1));
    assert!(page["next"].is_null());
    let page = get("/v1/pools/0/leases?state=free&limit=4").json().unwrap();
    assert_eq!(page["leases"][0]["address"], "10.9.0.10");
    assert_eq!(
        page["next"], "10.9.0.14",
        "10.9.0.12 is active: 10,11,13,14"
    );
    let page = get("/v1/pools/0/leases?state=free&limit=4&after=10.9.0.14")
        .json()
        .unwrap();
    assert_eq!(page["leases"][0]["address"], "10.9.0.15");
    assert_eq!(page["next"], "10.9.0.18");
    let pool = get("/v1/pools/0").json().unwrap();
    assert_eq!(
        (pool["total"].as_u64(), pool["active"].as_u64()),
        (Some(10), Some(1))
    );
    assert_eq!(pool["utilisation"], 10.0);
    assert_eq!(pool["subnet"], "10.9.0.0/24");
    let subnets = get("/v1/subnets").json().unwrap();
    assert_eq!(subnets["subnets"][1]["total"], 2);
    let metrics = String::from_utf8(get("/metrics").body).unwrap();
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(
        value("xdhcpd_leases{pool=\"0\",state=\"active\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value("xdhcpd_leases{pool=\"0\",state=\"free\"}"),
        Some(9.0),
        "{metrics}"
    );
    assert_eq!(
        value("xdhcpd_pool_utilisation_ratio{pool=\"0\"}"),
        Some(0.1),
        "{metrics}"
    );
    assert_eq!(
        value("xdhcpd_pool_exhausted{pool=\"1\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        value("xdhcpd_pool_addresses{pool=\"1\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        value("xdhcpd_dhcp_messages_out_total{type=\"ack\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE xdhcpd_server_latency_seconds histogram"));
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    // The error cases.
    let err = |a: super::client::Answer, code: u16, part: &str| {
        assert_eq!(a.status, code, "{}", a.reason());
        assert!(a.reason().contains(part), "{} lacks {part:?}", a.reason());
    };
    err(get("/v1/leases/ip/10.9.0"), 400, "not an IPv4 address");
    err(get("/v1/leases/ip/10.7.0.1"), 404, "in no configured pool");
    err(get("/v1/leases/mac/zz"), 400, "MAC");
    err(
        get("/v1/leases/mac/02-00-00-00-00-09"),
        404,
        "no lease record",
    );
    err(get("/v1/leases/client-id/01-ff"), 404, "no lease record");
    err(get("/v1/pools/7"), 404, "no pool 7");
    err(get("/v1/pools/x"), 400, "not a pool id");
    err(get("/v1/pools/0/leases?limit=0"), 400, "limit");
    err(
        get("/v1/pools/0/leases?after=10.8.0.10"),
        400,
        "not in pool 0",
    );
    err(
        get("/v1/pools/0/leases?sort=ip"),
        400,
        "unknown query parameter",
    );
    err(get("/v1/nothing"), 404, "no such endpoint");
    err(post("/v1/status", b""), 405, "not allowed");
    err(
        call(&ep, "DELETE", "/v1/pools/0", None).unwrap(),
        405,
        "not allowed",
    );
    err(get("/v1/failover"), 404, "failover is not configured");
    err(
        post("/v1/failover/partner-down", b"{\"force\":1}"),
        400,
        "force",
    );
    err(
        post("/v1/failover/partner-down", b"{}"),
        404,
        "failover is not configured",
    );
    err(
        post("/v1/failover/recover", b"{\"x\":1}"),
        400,
        "unknown field",
    );
    err(post("/v1/reload", b""), 501, "reload is not available");
    err(get("/v1/registrations"), 404, "no registration store");
    err(post("/v1/reconfigure", b""), 400, "exactly one");
    err(
        post("/v1/reconfigure", br#"{"ip": "10.9.0.20"}"#),
        409,
        "reconfiguration is off",
    );

    // A second API on the same socket is refused while the first runs.
    let again = Listen {
        socket: f.server.socket().to_path_buf(),
        tcp: None,
    };
    let st = ApiState {
        config: Arc::new(xdhcpd_config::parse(CONFIG, "t.toml").unwrap()).into(),
        interface: "lo".into(),
        server_id: "10.9.0.1".parse().unwrap(),
        io: "udp",
        table: f.table.clone(),
        engine_stats: vec![],
        workers: vec![],
        committer: None,
        xdp: None,
        failover: Vec::new(),
        registrations: None,
        registrations_pg: None,
        reload: None,
        started: Instant::now(),
        started_unix: 0,
        metrics: false,
        alarms: None,
        events: None,
        reconfigure: None,
        known_macs: None,
        refused: Default::default(),
        bulk_leasequery: None,
        relay_health: None,
    };
    let e = ApiServer::start(&again, Arc::new(st))
        .err()
        .expect("second API refused");
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn api_token_rule_on_tcp() {
    // Refused without a token on an address that is not loopback.
    let cfg = xdhcpd_config::ApiConfig {
        listen: Some("192.0.2.1:8067".parse().unwrap()),
        token_file: None,
        metrics: true,
    };
    let e = Listen::from_config("/tmp/x.sock".into(), &cfg).unwrap_err();
    assert!(e.to_string().contains("without a bearer token"), "{e}");
    // A short token is refused.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    assert!(super::read_token(&short).is_err());
    let good = dir.path().join("token");
    std::fs::write(&good, "s3cret-token-0123456789\n").unwrap();
    let token = super::read_token(&good).unwrap();
    assert_eq!(token, "s3cret-token-0123456789");

    let f = start(Some(("127.0.0.1:0".parse().unwrap(), Some(token.clone()))));
    let addr = f.server.tcp_addr().unwrap();
    let none = call(&Endpoint::Tcp(addr, None), "GET", "/v1/status", None).unwrap();
    assert_eq!(none.status, 401, "{}", none.reason());
    assert!(none.reason().contains("Bearer"));
    let wrong = call(
        &Endpoint::Tcp(addr, Some("s3cret-token-0123456788".into())),
        "GET",
        "/metrics",
        None,
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.reason(), "wrong bearer token");
    // Also for unknown paths: nothing is revealed before the token.
    let unknown = call(&Endpoint::Tcp(addr, None), "GET", "/v1/nothing", None).unwrap();
    assert_eq!(unknown.status, 401);
    let ok = call(&Endpoint::Tcp(addr, Some(token)), "GET", "/v1/status", None).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.reason());
    // The socket needs no token (its mode is the access control).
    let sock = call(
        &Endpoint::Unix(f.server.socket().to_path_buf()),
        "GET",
        "/v1/status",
        None,
    )
    .unwrap();
    assert_eq!(sock.status, 200);
}

/// Attack: a bearer-token holder on `[api] listen` names a file on the server host. Before
/// the rule, an export over TCP wrote `owned` (200) with the daemon's rights, and an import
/// read any file the daemon could. Over TCP both are refused (403, counted); over the
/// control socket they still work.
#[test]
fn api_registration_import_export_by_path_refused_over_tcp() {
    let regs_dir = tempfile::tempdir().unwrap();
    let (store, _) = xdhcpd_registrations::Store::open(&regs_dir.path().join("regs")).unwrap();
    let handler = crate::registrations::ctl::handler(
        Some(Arc::new(std::sync::Mutex::new(store))),
        Arc::new(|_| crate::control::Response::error("not a registration request")),
    );
    let token = "s3cret-token-0123456789".to_string();
    let f = start_with(
        Some(("127.0.0.1:0".parse().unwrap(), Some(token.clone()))),
        Some(handler),
    );
    let tcp = Endpoint::Tcp(f.server.tcp_addr().unwrap(), Some(token));
    let unix = Endpoint::Unix(f.server.socket().to_path_buf());
    let owned = regs_dir.path().join("owned");
    let export = serde_json::json!({"op": "export", "path": owned}).to_string();
    let r = call(&tcp, "POST", "/v1/registrations", Some(export.as_bytes())).unwrap();
    assert_eq!(r.status, 403, "{}", r.reason());
    assert!(r.reason().contains("control socket"), "{}", r.reason());
    assert!(!owned.exists(), "an export over TCP wrote a server file");
    let secret = regs_dir.path().join("secret.csv");
    std::fs::write(&secret, "mac,group\n02:00:00:00:00:01,a\n").unwrap();
    let import = serde_json::json!({"op": "import", "path": secret}).to_string();
    let r = call(&tcp, "POST", "/v1/registrations", Some(import.as_bytes())).unwrap();
    assert_eq!(r.status, 403, "{}", r.reason());
    // Other registration requests still work over TCP.
    let r = call(&tcp, "GET", "/v1/registrations", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.reason());
    // Counted, and shown in /metrics.
    let m = call(&tcp, "GET", "/metrics", None).unwrap();
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("xdhcpd_api_refused_total{reason=\"server_file_over_tcp\"} 2"),
        "{text}"
    );
    // The local operator may.
    let r = call(&unix, "POST", "/v1/registrations", Some(export.as_bytes())).unwrap();
    assert_eq!(r.status, 200, "{}", r.reason());
    assert!(owned.exists());
    let r = call(&unix, "POST", "/v1/registrations", Some(import.as_bytes())).unwrap();
    assert_eq!(r.status, 200, "{}", r.reason());
}

#[test]
fn api_constant_time_token_compare() {
    use super::routes::constant_time_eq;
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
    assert!(constant_time_eq(b"", b""));
}

/// An API over a live reloader (the daemon's wiring), with the file `x.toml` in `dir`.
fn live(
    dir: &std::path::Path,
    alarms: Option<Arc<crate::alarms::AlarmCounters>>,
    events: Option<(
        Arc<crate::events::EventLogStats>,
        Arc<std::sync::atomic::AtomicU64>,
    )>,
) -> (
    ApiServer,
    crate::server::reload::Reloader,
    std::path::PathBuf,
) {
    use crate::server::reload::{EngineCell, Overrides, Reloader};
    let file = dir.join("x.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let cfg = Arc::new(xdhcpd_config::load(&file).unwrap_or_else(|e| panic!("{e}")));
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let opts = OpenOptions {
        spare: 64,
        ..OpenOptions::default()
    };
    let (t, _) = LeaseTable::open(&dir.join("l.db"), &pools, &opts).unwrap();
    let table = Arc::new(t);
    let shared =
        xdhcpd_dhcpv4::EngineShared::new(cfg.clone(), table.clone(), "10.9.0.1".parse().unwrap());
    let cell = Arc::new(EngineCell::new(Arc::new(shared)));
    let reloader = Reloader::new(file.clone(), Overrides::default(), cfg, cell);
    let state = ApiState {
        config: super::ConfigView::Live(reloader.clone()),
        interface: "lo".into(),
        server_id: "10.9.0.1".parse().unwrap(),
        io: "udp",
        table,
        engine_stats: vec![Arc::default()],
        workers: vec![Arc::default()],
        committer: None,
        xdp: None,
        failover: Vec::new(),
        registrations: None,
        reload: None,
        started: Instant::now(),
        started_unix: lease_store::unix_now(),
        metrics: true,
        alarms,
        events,
        registrations_pg: None,
        reconfigure: None,
        known_macs: None,
        refused: Default::default(),
        bulk_leasequery: None,
        relay_health: None,
    };
    let listen = Listen {
        socket: dir.join("api.sock"),
        tcp: None,
    };
    let server = ApiServer::start(&listen, Arc::new(state)).unwrap();
    (server, reloader, file)
}

/// `/v1/subnets`, `/v1/pools` and `/v1/status` answer from the configuration being served:
/// after a reload that adds a subnet with a pool, they show it.
#[test]
fn api_pools_and_subnets_follow_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (server, reloader, file) = live(dir.path(), None, None);
    let ep = Endpoint::Unix(server.socket().to_path_buf());
    let get = |p: &str| call(&ep, "GET", p, None).unwrap().json().unwrap();
    let subnets = |v: &serde_json::Value| {
        v["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subnet"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(subnets(&get("/v1/subnets")), ["10.9.0.0/24", "10.8.0.0/24"]);
    assert_eq!(get("/v1/pools")["pools"].as_array().unwrap().len(), 2);

    let more = format!(
        "{CONFIG}[[subnet]]\ncidr = \"10.7.0.0/24\"\npool = [{{ range = \"10.7.0.10-10.7.0.29\" }}]\n"
    );
    std::fs::write(&file, more).unwrap();
    reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    let v = get("/v1/subnets");
    assert_eq!(
        subnets(&v),
        ["10.9.0.0/24", "10.8.0.0/24", "10.7.0.0/24"],
        "{v}"
    );
    assert_eq!(v["subnets"][2]["total"], 20, "{v}");
    assert_eq!(v["subnets"][2]["pools"], serde_json::json!([2]), "{v}");
    let p = get("/v1/pools/2");
    assert_eq!(
        (&p["subnet"], &p["first"], &p["free"]),
        (
            &serde_json::json!("10.7.0.0/24"),
            &serde_json::json!("10.7.0.10"),
            &serde_json::json!(20)
        ),
        "{p}"
    );
}

/// `/metrics` carries the reload counters and generation, the alarms and the event log's
/// counters, and they move.
#[test]
fn api_metrics_export_reload_alarm_and_event_log_counters() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let alarms = Arc::new(crate::alarms::AlarmCounters::default());
    let events = Arc::new(crate::events::EventLogStats::default());
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (server, reloader, file) = live(
        dir.path(),
        Some(alarms.clone()),
        Some((events.clone(), dropped.clone())),
    );
    let ep = Endpoint::Unix(server.socket().to_path_buf());
    let metrics = || String::from_utf8(call(&ep, "GET", "/metrics", None).unwrap().body).unwrap();
    let has = |m: &str, line: &str| {
        assert!(m.lines().any(|l| l == line), "no line {line:?} in:\n{m}");
    };
    let m = metrics();
    has(&m, "xdhcpd_reloads_total{outcome=\"accepted\"} 0");
    has(&m, "xdhcpd_reloads_total{outcome=\"refused\"} 0");
    has(&m, "xdhcpd_config_generation 0.0");
    has(&m, "xdhcpd_alarms_raised_total{alarm=\"pool-exhausted\"} 0");
    has(&m, "xdhcpd_alarms_active{alarm=\"pool-exhausted\"} 0.0");
    has(&m, "xdhcpd_event_log_written_total 0");
    has(&m, "xdhcpd_event_log_dropped_total 0");
    has(&m, "xdhcpd_event_log_rotations_total 0");
    has(&m, "xdhcpd_lease_spare_addresses 64.0");

    // One accepted reload (grows the table), one refused.
    let more = format!(
        "{CONFIG}[[subnet]]\ncidr = \"10.7.0.0/24\"\npool = [{{ range = \"10.7.0.10-10.7.0.29\" }}]\n"
    );
    std::fs::write(&file, &more).unwrap();
    reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, more.replace("cidr", "cidrr")).unwrap();
    reloader.reload().expect_err("invalid file refused");
    alarms.pool_exhausted_raised.fetch_add(1, Relaxed);
    alarms.pool_exhausted_active.store(1, Relaxed);
    events.written.fetch_add(7, Relaxed);
    events.rotations.fetch_add(1, Relaxed);
    dropped.fetch_add(2, Relaxed);
    let m = metrics();
    has(&m, "xdhcpd_reloads_total{outcome=\"accepted\"} 1");
    has(&m, "xdhcpd_reloads_total{outcome=\"refused\"} 1");
    has(&m, "xdhcpd_config_generation 1.0");
    has(&m, "xdhcpd_reload_last_refused 1.0");
    has(&m, "xdhcpd_alarms_raised_total{alarm=\"pool-exhausted\"} 1");
    has(&m, "xdhcpd_alarms_active{alarm=\"pool-exhausted\"} 1.0");
    has(&m, "xdhcpd_event_log_written_total 7");
    has(&m, "xdhcpd_event_log_dropped_total 2");
    has(&m, "xdhcpd_event_log_rotations_total 1");
    has(&m, "xdhcpd_lease_spare_addresses 44.0");
    has(&m, "xdhcpd_pool_addresses{pool=\"2\"} 20.0");
}
