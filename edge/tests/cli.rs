//! The `edge` binary's command line: `--validate` accepts the shipped example and refuses a bad
//! file with exit status 64, naming every bad key.

use std::process::Command;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge"))
}

#[test]
fn validate_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/edge.example.toml");
    let out = edge()
        .args(["--config", example, "--validate"])
        .output()
        .expect("run edge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn validate_names_every_bad_key_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[server]\nthreds = 1\n[origin]\naddresses = []\n[admin]\nlisten = 5\n",
    )
    .expect("write");
    let out = edge()
        .arg("--config")
        .arg(&path)
        .arg("--validate")
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["server.threds", "origin.addresses", "admin.listen"] {
        assert!(
            stderr.contains(&format!("- {key}:")),
            "{key} not named in:\n{stderr}"
        );
    }
}
