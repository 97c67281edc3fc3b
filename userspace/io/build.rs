//! Embeds the XDP object when `XDHCPD_EBPF_OBJECT` names one (as `cargo xtask build` does).
//!
//! Always writes `OUT_DIR/xdhcpd-ebpf.o` (empty when there is nothing to embed) and sets the
//! `embedded_ebpf` cfg only when a real object was copied, so `src/xdp` can fall back to
//! loading the object from disk.
use std::{env, fs, path::PathBuf};

const VAR: &str = "XDHCPD_EBPF_OBJECT";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(embedded_ebpf)");
    println!("cargo::rerun-if-env-changed={VAR}");
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        // Cargo always sets OUT_DIR for build scripts; without it there is nowhere to write.
        println!("cargo::error=OUT_DIR is not set");
        return;
    };
    let dest = out_dir.join("xdhcpd-ebpf.o");
    let source = env::var_os(VAR).map(PathBuf::from).filter(|p| p.is_file());
    let result = match &source {
        Some(object) => {
            println!("cargo::rerun-if-changed={}", object.display());
            fs::copy(object, &dest).map(|_| {
                println!("cargo::rustc-cfg=embedded_ebpf");
            })
        }
        None => {
            if let Some(named) = env::var_os(VAR) {
                // Still watch the path, so the object appearing later triggers a rebuild.
                println!(
                    "cargo::rerun-if-changed={}",
                    PathBuf::from(&named).display()
                );
                println!(
                    "cargo::warning={VAR}={} is not a file; building without an embedded XDP object",
                    PathBuf::from(named).display()
                );
            }
            fs::write(&dest, [])
        }
    };
    if let Err(e) = result {
        let what = source.as_deref().map_or_else(
            || "an empty placeholder".to_owned(),
            |p| p.display().to_string(),
        );
        println!("cargo::error=writing {what} to {}: {e}", dest.display());
    }
}
