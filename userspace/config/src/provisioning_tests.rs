//! Provisioning configuration: the PROV example, classes, shared networks, pool rules,
//! vendor option spaces, and positioned errors for each thing that can be wrong.

use std::net::Ipv4Addr;

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Parses `text` as `t.toml` and returns the error lines (empty if it parsed).
fn error_lines(text: &str) -> Vec<String> {
    match parse(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

fn class<'c>(cfg: &'c Config, name: &str) -> &'c Class {
    cfg.classes.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn prov_example_classes_shared_network_and_registrations() {
    let cfg = parse(PROV_CONFIG, "prov.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.classes.len(), 9);
    for (i, c) in cfg.classes.iter().enumerate() {
        assert_eq!(usize::from(c.id), i);
    }
    let cm = class(&cfg, "docsis_cm");
    assert_eq!(
        cm.matches.vendor_class,
        vec![BytesMatch::Prefix(b"docsis".to_vec())]
    );
    assert_eq!(cm.settings.boot_file.as_deref(), Some("docsis3.cfg"));
    assert_eq!(cm.settings.options.get(67), Some(&b"docsis3.cfg"[..]));
    assert_eq!(cm.settings.next_server, Some(ip("192.168.0.12")));
    assert!(
        cm.settings.codes[0] & (1 << 7) != 0,
        "option 7 in the code bitmap"
    );

    // Option 122 (RFC 3495): sub-options 1, 2 (addresses), 3 (type 0 + FQDN), 6 (realm).
    let mta = class(&cfg, "docsis_mta");
    let o122 = mta.settings.options.get(122).unwrap();
    let mut want = vec![1, 4, 192, 168, 0, 11, 2, 4, 192, 168, 0, 12];
    let fqdn = b"\x05ttss1\x04voip\x07hkcable\x03com\x00";
    want.extend_from_slice(&[3, (fqdn.len() + 1) as u8, 0]);
    want.extend_from_slice(fqdn);
    want.extend_from_slice(&[6, 9, 5, b'B', b'A', b'S', b'I', b'C', 1, b'1', 0]);
    assert_eq!(o122, &want[..]);

    let tr = class(&cfg, "tr069");
    let url = b"http://acs.example.com:7547/";
    let mut o43 = vec![1, url.len() as u8];
    o43.extend_from_slice(url);
    assert_eq!(tr.settings.options.get(43), Some(&o43[..]));

    let legacy = class(&cfg, "legacy_cm");
    assert_eq!(legacy.matches.remote_id_is_chaddr, Some(true));
    assert_eq!(legacy.matches.known, Some(true));
    assert_eq!(
        class(&cfg, "test_mta")
            .settings
            .host_name_from_mac
            .as_deref(),
        Some("mta-")
    );
    let meter = class(&cfg, "smart_meter");
    assert_eq!(meter.settings.times.default, Some(86400));

    // One shared network with both subnets; its relay address selects it.
    assert_eq!(cfg.shared_networks.len(), 1);
    let sn = &cfg.shared_networks[0];
    assert_eq!(sn.subnets, vec![0, 1]);
    assert_eq!(sn.relay_addresses, vec![ip("10.77.0.9")]);
    assert_eq!(
        sn.settings.options.get(2),
        Some(&(-10800i32).to_be_bytes()[..])
    );
    assert_eq!(
        sn.settings.options.get(4),
        Some(&[192, 168, 0, 12, 192, 168, 0, 11][..])
    );
    assert_eq!(cfg.subnet_for(ip("10.77.0.9")).map(|s| s.index), Some(0));
    assert!(cfg
        .trusted_relays()
        .iter()
        .any(|n| n.contains(ip("10.77.0.9"))));

    let modem = &cfg.subnets[0];
    assert_eq!(modem.shared_network, Some(0));
    assert_eq!(modem.pools.len(), 3);
    assert_eq!(modem.pool_rules.len(), 3);
    let cm_id = cm.id;
    let mta_id = mta.id;
    assert!(modem.pool_rules[0].allow.contains(cm_id));
    assert!(modem.pool_rules[0].deny.contains(mta_id));
    assert!(modem.pool_rules[0].deny_unknown);
    assert!(modem.pool_rules[2].allow.contains(mta_id));
    // Lease times from [lease].
    assert_eq!(modem.times.default, 21600);
    assert_eq!(modem.times.max, 21600);

    assert_eq!(cfg.hosts.len(), 4);
    assert_eq!(cfg.hosts[0].group, Some(class(&cfg, "basic_cm").id));
    assert_eq!(cfg.hosts[2].group, None);
}

#[test]
fn class_pool_rules_permit() {
    let r = PoolRules {
        allow: ClassSet(0b011),
        deny: ClassSet(0b100),
        deny_unknown: true,
        settings: Settings::default(),
    };
    assert!(r.permits(ClassSet(0b001), true));
    assert!(!r.permits(ClassSet(0b001), false), "deny-unknown");
    assert!(!r.permits(ClassSet(0b101), true), "deny wins over allow");
    assert!(!r.permits(ClassSet(0b1000), true), "not in allow");
    let open = PoolRules::default();
    assert!(open.permits(ClassSet::EMPTY, false));
}

const BASE: &str = "[server]\ninterface = \"eth0\"\n\n";

fn with(body: &str) -> String {
    format!("{BASE}{body}")
}

const SUBNET: &str = r#"
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.20"
"#;

#[test]
fn class_config_error_unknown_class_name_is_positioned() {
    let text = with(&format!(
        "[[class]]\nname = \"modem\"\n{SUBNET}allow = [\"modme\"]\n"
    ));
    let errs = error_lines(&text);
    assert_eq!(
        errs,
        vec!["t.toml:11:10: subnet[0].pool[0].allow[0]: unknown class `modme`; did you mean `modem`?"],
        "{errs:?}"
    );
    let text = with(&format!(
        "{SUBNET}[[host]]\nhw = \"02:00:00:00:00:01\"\ngroup = \"gold\"\n"
    ));
    let errs = error_lines(&text);
    assert_eq!(
        errs,
        vec!["t.toml:11:9: host[0].group: unknown class `gold`: no [[class]] is declared"],
        "{errs:?}"
    );
}

#[test]
fn class_config_error_duplicate_and_too_many_classes() {
    let text = with(&format!(
        "[[class]]\nname = \"a\"\n[[class]]\nname = \"a\"\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "t.toml:7:8: class[1].name: class `a` is already declared at class[0].name (line 5)"
        ),
        "{errs:?}"
    );

    let mut many = String::new();
    for i in 0..=MAX_CLASSES {
        many.push_str(&format!("[[class]]\nname = \"c{i}\"\n"));
    }
    let errs = error_lines(&with(&format!("{many}{SUBNET}")));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("class[64].name: class `c64` is class number 65; at most 64 classes"),
        "{errs:?}"
    );
}

#[test]
fn class_config_error_class_that_can_never_match() {
    let text = with(&format!(
        "[[class]]\nname = \"x\"\nvendor-class = \"docsis3.0\"\nvendor-class-prefix = \"pktc\"\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("t.toml:7:23: class[0].vendor-class-prefix: this class can never match"),
        "{errs:?}"
    );

    let text = with(&format!(
        "[[class]]\nname = \"g\"\n[[class]]\nname = \"x\"\ngroup = \"g\"\nknown = false\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.toml:9:9: class[1].known: this class can never match"),
        "{errs:?}"
    );

    let text = with(&format!(
        "[[class]]\nname = \"x\"\nremote-id = \"abc\"\nremote-id-is-chaddr = true\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(
            "class[0].remote-id-is-chaddr: this class can never match: `remote-id` is 3 bytes"
        ),
        "{errs:?}"
    );

    // A pool no class can use.
    let text = with(&format!(
        "[[class]]\nname = \"a\"\n{SUBNET}allow = [\"a\"]\ndeny = [\"a\"]\n"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("subnet[0].pool[0].deny: this pool can never be used"),
        "{errs:?}"
    );
}

#[test]
fn class_config_error_option_does_not_fit_its_type() {
    let text = with(&format!(
        "[[class]]\nname = \"mta\"\noption-122 = [{{ code = 1, text = \"dhcp.example\" }}]\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(
        errs,
        vec!["t.toml:6:34: class[0].option-122[0].text: option 122 sub-option 1 (TSP's primary DHCP server address) does not fit `text`: it takes `ip` with one address"],
        "{errs:?}"
    );
    let text = with(&format!(
        "[[class]]\nname = \"mta\"\noption-122 = [{{ code = 4, hex = \"0102\" }}]\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("is 12 bytes, got 2"), "{errs:?}");

    // Too long in total.
    let long = "a".repeat(200);
    let text = with(&format!(
        "[[class]]\nname = \"x\"\noption-43 = [{{ code = 1, text = \"{long}\" }}, {{ code = 2, text = \"{long}\" }}]\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("class[0].option-43: option 43 encodes to 404 bytes; the limit is 255"),
        "{errs:?}"
    );

    // Option 43 twice (generic and vendor form).
    let text = with(&format!(
        "[[class]]\nname = \"x\"\noptions = [{{ code = 43, hex = \"0102\" }}]\noption-43 = [{{ code = 1, text = \"a\" }}]\n{SUBNET}"
    ));
    let errs = error_lines(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("option 43 is already set by `options[0]`"),
        "{errs:?}"
    );
}

#[test]
fn class_option_125_groups_by_enterprise() {
    let text = with(&format!(
        r#"[[class]]
name = "x"
option-125 = [
  {{ enterprise = 4491, code = 1, hex = "0102" }},
  {{ enterprise = 3561, code = 1, text = "ab" }},
  {{ enterprise = 4491, code = 2, u8 = 7 }},
]
{SUBNET}"#
    ));
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.classes[0].settings.options.get(125),
        Some(
            &[
                0, 0, 0x11, 0x8b, 7, 1, 2, 1, 2, 2, 1, 7, // 4491: subs 1 and 2
                0, 0, 0x0d, 0xe9, 4, 1, 2, b'a', b'b', // 3561: sub 1
            ][..]
        )
    );
}

#[test]
fn class_config_error_overlapping_pools_across_shared_networks() {
    let text = with(
        r#"[[shared-network]]
name = "a"
relay-addresses = ["192.0.2.1"]
[[shared-network]]
name = "b"
relay-addresses = ["192.0.2.2"]
[[subnet]]
cidr = "10.0.0.0/24"
shared-network = "a"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.20"
[[subnet]]
cidr = "10.0.0.0/24"
shared-network = "b"
[[subnet.pool]]
range = "10.0.0.15-10.0.0.30"
"#,
    );
    let errs = error_lines(&text);
    assert!(
        errs.iter().any(|e| e.starts_with("t.toml:19:9: subnet[1].pool[0].range: 10.0.0.15-10.0.0.30 overlaps subnet[0].pool[0].range 10.0.0.10-10.0.0.20")),
        "{errs:?}"
    );
    // Unknown network, and a network without subnets.
    let text = with(&format!(
        "[[shared-network]]\nname = \"a\"\n{SUBNET}shared-network = \"b\"\n"
    ));
    let errs = error_lines(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("subnet[0].pool[0]") || e.contains("shared-network")),
        "{errs:?}"
    );
}

#[test]
fn class_shared_network_times_under_subnet_times() {
    let text = with(
        r#"[lease]
default-time = 600
max-time = 90000
[[shared-network]]
name = "a"
default-time = 1200
[[subnet]]
cidr = "10.0.0.0/24"
shared-network = "a"
[[subnet]]
cidr = "10.0.1.0/24"
shared-network = "a"
default-time = 1800
"#,
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.subnets[0].times.default, 1200);
    assert_eq!(cfg.subnets[1].times.default, 1800);
    assert_eq!(cfg.shared_networks[0].subnets, vec![0, 1]);
}

#[test]
fn class_bytes_match_exact_prefix_contains() {
    let c = |p: &[u8]| BytesMatch::Contains(p.to_vec());
    assert!(c(b"dslforum.org").test(b"dslforum.org"));
    assert!(c(b"dslforum.org").test(b"xx dslforum.org"));
    assert!(c(b"dslforum.org").test(b"dslforum.org yy"));
    assert!(c(b"aab").test(b"aaab"), "a repeated first byte");
    assert!(!c(b"dslforum.org").test(b"dslforum.or"));
    assert!(!c(b"abc").test(b"ab"));
    assert!(c(b"").test(b""));
    let p = |x: &[u8]| BytesMatch::Prefix(x.to_vec());
    assert!(p(b"docsis").test(b"docsis3.0"));
    assert!(!p(b"docsis").test(b"docsi"));
    assert!(!p(b"docsis").test(b"pktc1.0:"));
    let e = |x: &[u8]| BytesMatch::Exact(x.to_vec());
    assert!(e(b"docsis3.0").test(b"docsis3.0"));
    assert!(!e(b"docsis3.0").test(b"docsis3.0:"));
    assert!(!e(b"docsis3.0").test(b"Docsis3.0"));
}
