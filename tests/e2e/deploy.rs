//! What `deploy/` ships: the systemd units pass `systemd-analyze verify` (every key known, every
//! command executable: the units' binaries replaced by the ones just built, memcached by the one
//! installed), with no warning at all; the container files build the same binaries the units run.

use std::path::Path;
use std::process::Command;

use outpost_e2e::process::binary;

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn the_systemd_units_verify_without_a_warning() {
    let memcached = Command::new("sh")
        .args(["-c", "command -v memcached"])
        .output()
        .expect("sh");
    let memcached = String::from_utf8_lossy(&memcached.stdout).trim().to_owned();
    assert!(
        !memcached.is_empty(),
        "memcached is not installed (scripts/test installs it)"
    );
    let edge = binary("edge").expect("edge binary");
    let origin = binary("origin").expect("origin binary");
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(deploy().join("systemd")).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .expect("unit")
            .replace("/usr/local/bin/outpost-edge", &edge.display().to_string())
            .replace(
                "/usr/local/bin/outpost-origin",
                &origin.display().to_string(),
            )
            .replace("/usr/bin/memcached", &memcached);
        let copy = scratch.path().join(path.file_name().expect("name"));
        std::fs::write(&copy, text).expect("write unit");
        units.push(copy);
    }
    assert_eq!(units.len(), 3, "edge, origin and memcached units");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (scripts/test installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
}

#[test]
fn the_container_files_build_what_the_units_run_as_a_non_root_user() {
    for (file, package) in [
        ("edge.Containerfile", "edge"),
        ("origin.Containerfile", "origin"),
    ] {
        let text = std::fs::read_to_string(deploy().join("container").join(file)).expect(file);
        let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
        assert_eq!(froms, 2, "{file}: a build stage and a runtime stage");
        let build = format!("cargo build --release --locked -p {package} --bin {package}");
        assert!(text.contains(&build), "{file}: builds with `{build}`");
        let user = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("a USER line");
        assert!(
            !user.starts_with("root") && !user.starts_with("0"),
            "{file}: runs as {user}"
        );
        assert!(
            text.contains(&format!("/usr/local/bin/outpost-{package}")),
            "{file}: installs the binary where the unit runs it"
        );
    }
}
