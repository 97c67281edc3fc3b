//! The configuration reference (`docs/configuration.md`) and the xdhcpd.toml(5) manual page
//! generated from it. `config_reference_lists_every_key` checks the reference against the
//! schema's own key lists, so a key added without documentation fails the tests.

/// `docs/configuration.md`, embedded.
pub const CONFIG_REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The tables of the reference: (table as named by `xdhcpd_config::schema_keys`, keys with
/// their default and meaning).
pub fn reference_tables() -> Vec<(String, Vec<[String; 4]>)> {
    let mut out: Vec<(String, Vec<[String; 4]>)> = Vec::new();
    for line in CONFIG_REFERENCE.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let name = h
                .trim()
                .trim_matches('`')
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            out.push((name, Vec::new()));
        } else if let (Some(row), Some((_, rows))) = (line.strip_prefix("| `"), out.last_mut()) {
            let cells: Vec<String> = format!("`{row}")
                .trim_end_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            if let [k, d, r, m] = cells.as_slice() {
                rows.push([
                    k.trim_matches('`').to_string(),
                    d.clone(),
                    r.clone(),
                    m.clone(),
                ]);
            }
        }
    }
    out
}

fn roff_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('`', "")
        .replace('-', "\\-")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// xdhcpd.toml(5), from the reference.
pub fn config_man_page() -> String {
    let mut m = String::new();
    m.push_str(&format!(
        ".TH XDHCPD.TOML 5 \"\" \"xdhcpd {}\" \"File Formats\"\n",
        crate::VERSION
    ));
    m.push_str(".SH NAME\nxdhcpd.toml \\- configuration file of xdhcpd(8)\n");
    m.push_str(".SH DESCRIPTION\n");
    for line in CONFIG_REFERENCE.lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        if !line.trim().is_empty() {
            m.push_str(&roff_escape(line));
            m.push('\n');
        }
    }
    for (table, rows) in reference_tables() {
        m.push_str(&format!(".SH {}\n", roff_escape(&format!("[{table}]"))));
        for [k, d, r, what] in rows {
            m.push_str(&format!(
                ".TP\n.B {}\n{} (default: {}; reload: {})\n",
                roff_escape(&k),
                roff_escape(&what),
                roff_escape(&d),
                roff_escape(&r)
            ));
        }
    }
    m.push_str(".SH SEE ALSO\nxdhcpd(8)\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reference_lists_every_key() {
        let doc = reference_tables();
        for (table, keys) in xdhcpd_config::schema_keys() {
            if table.is_empty() {
                // Root keys are the tables themselves.
                for k in keys {
                    assert!(
                        doc.iter().any(|(t, _)| t == k),
                        "docs/configuration.md has no section for [{k}]"
                    );
                }
                continue;
            }
            let Some((_, rows)) = doc.iter().find(|(t, _)| t == table) else {
                panic!("docs/configuration.md has no section for {table}");
            };
            for k in keys.iter() {
                assert!(
                    rows.iter().any(|r| r[0] == *k),
                    "docs/configuration.md, section {table}: key {k} is not documented"
                );
            }
            for r in rows {
                assert!(
                    keys.contains(&r[0].as_str()),
                    "docs/configuration.md, section {table}: {} is not a key of the schema",
                    r[0]
                );
                assert!(!r[1].is_empty(), "{table}.{}: no default", r[0]);
                assert!(
                    r[2] == "live" || r[2] == "restart",
                    "{table}.{}: reload must be live or restart",
                    r[0]
                );
            }
        }
        let schema: Vec<&str> = xdhcpd_config::schema_keys()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        for (t, _) in &doc {
            assert!(
                schema.contains(&t.as_str()),
                "section {t} is not in the schema"
            );
        }
    }

    #[test]
    fn config_man_page_has_every_table() {
        let m = config_man_page();
        assert!(m.starts_with(".TH XDHCPD.TOML 5"));
        for t in [
            "[server]",
            "[lease]",
            "[failover]",
            "[event\\-log]",
            "[alarms]",
        ] {
            assert!(m.contains(&format!(".SH {t}")), "{t}");
        }
        assert!(m.contains(".B lease\\-file"));
    }
}
