//! The `edge` binary's command line: `--validate` accepts the shipped example and refuses a bad
//! file with exit status 64, naming every bad key.

use std::process::Command;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge"))
}

/// `edge --validate` on a file holding `config`: its exit status and its stderr.
fn validate(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, config).expect("write");
    let out = edge()
        .arg("--config")
        .arg(&path)
        .arg("--validate")
        .output()
        .expect("run edge");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    let (status, stderr) =
        validate("[server]\nthreds = 1\n[origin]\naddresses = []\n[admin]\nlisten = 5\n");
    assert_eq!(status, Some(64));
    for key in ["server.threds", "origin.addresses", "admin.listen"] {
        assert!(
            stderr.contains(&format!("- {key}:")),
            "{key} not named in:\n{stderr}"
        );
    }
}

#[test]
fn a_bad_access_log_is_named_by_key() {
    let (status, stderr) = validate(
        "[access_log]\nformat = \"xml\"\npath = \"/tmp\"\nbuffer_bytes = 0\nflush_ms = 0\n",
    );
    assert_eq!(status, Some(64));
    for key in [
        "access_log.format",
        "access_log.buffer_bytes",
        "access_log.flush_ms",
    ] {
        assert!(
            stderr.contains(&format!("- {key}:")),
            "{key} not named in:\n{stderr}"
        );
    }
    // Well typed, but where no file can be written.
    for (path, why) in [
        (
            "/nonexistent-dir/access.log",
            "its directory /nonexistent-dir does not exist",
        ),
        ("/tmp", "is a directory"),
    ] {
        let (status, stderr) = validate(&format!("[access_log]\npath = \"{path}\"\n"));
        assert_eq!(status, Some(64));
        assert!(
            stderr.contains(&format!("- access_log.path: {path}: {why}")),
            "{stderr}"
        );
    }
}
