//! Every config file shipped in `config/` passes `--validate` (with test certificates where it
//! names the ones `scripts/dev-certs` makes); a broken one is refused with exit
//! status 64 and every bad key named.

use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_e2e::process::binary;
use outpost_e2e::tls::TestCa;

fn config_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `origin*.toml` belongs to the origin, everything else to the edge.
fn binary_for(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("origin") {
        "origin"
    } else {
        "edge"
    }
}

#[test]
fn every_shipped_config_validates() {
    let files = config_files();
    assert!(
        files.iter().any(|f| binary_for(f) == "origin"),
        "no origin config in config/"
    );
    // Examples with TLS name the files `scripts/dev-certs` writes to data/certs/; here the same
    // names come from a test CA, so a fresh checkout validates them too.
    let ca = TestCa::new();
    for host in ["a.localhost", "b.localhost"] {
        ca.leaf(host, &[host]);
    }
    let certs = format!("{}/", ca.dir().display());
    let scratch = tempfile::tempdir().expect("tempdir");
    for file in files {
        let bin = binary(binary_for(&file)).expect("binary");
        let text = std::fs::read_to_string(&file).expect("read config");
        let checked = if text.contains("data/certs/") {
            let copy = scratch.path().join(file.file_name().expect("file name"));
            std::fs::write(&copy, text.replace("data/certs/", &certs)).expect("write copy");
            copy
        } else {
            file.clone()
        };
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&checked)
            .arg("--validate")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{} --validate {}: {}{}",
            bin.display(),
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_broken_config_names_every_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("origin.toml");
    std::fs::write(
        &path,
        "listen = \"nowhere\"\nshutdown_grace = 3\n[limits]\nmax_upload_bytes = -1\n[purge]\nedge_admin_url = \"http://edge\"\n",
    )
    .expect("write");
    let out = Command::new(binary("origin").expect("binary"))
        .arg("--config")
        .arg(&path)
        .arg("--validate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen",
        "shutdown_grace",
        "limits.max_upload_bytes",
        "purge.token",
    ] {
        assert!(
            stderr.contains(&format!("- {key}:")),
            "{key} not named in:\n{stderr}"
        );
    }
}
