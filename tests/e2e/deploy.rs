//! What `deploy/` ships: the systemd units pass `systemd-analyze verify` (every key known, every
//! command executable: the units' binaries replaced by the ones just built, memcached by the one
//! installed), with no warning at all; the container files build the same binaries the units run;
//! the alert rules pass `promtool check` and their unit tests, and name only metrics a new edge
//! exports, as does the dashboard; logrotate with the shipped rules rotates a live edge's log.

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

/// Every `outpost_…` metric a file names.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("outpost_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        // `outpost-edge` (the dashboard's uid) and file names are not metrics.
        if name.len() > "outpost_".len() {
            names.insert(name);
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_name_only_metrics_a_new_edge_exports() -> anyhow::Result<()> {
    use outpost_e2e::process::free_port;
    use outpost_e2e::tls::TestCa;
    use outpost_e2e::{EdgeProcess, Memcached, ScriptedOrigin};

    let rules = std::fs::read_to_string(deploy().join("prometheus/outpost-alerts.yml"))?;
    let dashboard = std::fs::read_to_string(deploy().join("grafana/outpost-edge.json"))?;
    // The rules' shape: every rule an alert with an expression, a severity and a summary.
    let alerts = rules.matches("- alert: ").count();
    assert!(alerts >= 8, "{alerts} alerts");
    for part in [
        "        expr: ",
        "          severity: ",
        "          summary: ",
    ] {
        assert_eq!(
            rules.matches(part).count(),
            alerts,
            "every alert has `{}`",
            part.trim()
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard)?;
    let panels = dashboard["panels"].as_array().map_or(0, Vec::len);
    assert!(panels >= 12, "{panels} panels");
    let mut named = metric_names(&rules);
    named.extend(metric_names(&dashboard.to_string()));

    // A new node with everything the files speak of configured (a shared tier, TLS, another
    // region to forward purges to), before any traffic.
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let ca = TestCa::new();
    let leaf = ca.leaf("a", &["a.test"]);
    let (tls, other_region) = (free_port()?, free_port()?);
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!(
            "[server.tls]\nlisten = [\"127.0.0.1:{tls}\"]\n\
             [[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [l2]\nservers = [\"{}\"]\n\
             [admin]\ntoken = \"t0ken\"\n\
             [purge]\nregion = \"eu\"\n\
             [[purge.regions]]\nname = \"us\"\nadmin_url = \"http://127.0.0.1:{other_region}\"\n\
             token = \"other\"\n",
            leaf.cert_path.display(),
            leaf.key_path.display(),
            memcached.addr
        ),
    )?;
    let exported = outpost_e2e::http_client()
        .get(edge.admin_url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let present: std::collections::BTreeSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or the alerts but not exported by a new edge: {missing:?}\n{exported}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_with_the_shipped_rules_moves_an_edges_access_log_and_the_edge_follows()
-> anyhow::Result<()> {
    use outpost_e2e::wait::eventually;
    use outpost_e2e::{EdgeProcess, ScriptedOrigin, http_client};
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("access.log");
    let origin = ScriptedOrigin::start().await?;
    origin.route("/r", outpost_e2e::Reply::ok("max-age=600", "r"));
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!("[access_log]\npath = \"{}\"\n", log.display()),
    )?;
    let get = || async {
        let status = http_client().get(edge.url("/r")).send().await?.status();
        anyhow::ensure!(status == 200, "{status}");
        anyhow::Ok(())
    };
    let lines = |p: std::path::PathBuf| {
        let n = std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
        async move { Some(n) }
    };
    get().await?;
    eventually(Duration::from_secs(10), "the first line", || async {
        (lines(log.clone()).await? == 1).then_some(())
    })
    .await?;

    // The shipped rules, on this test's file, signalling this edge instead of systemd's unit.
    let rules = std::fs::read_to_string(deploy().join("logrotate/outpost"))?;
    let postrotate = rules
        .lines()
        .find(|l| l.trim_start().starts_with("systemctl kill"))
        .expect("a postrotate command");
    let rules = rules
        .replace(
            "/var/log/outpost-edge/access.log",
            &log.display().to_string(),
        )
        .replace(
            "/var/log/outpost-origin/access.log",
            &dir.path().join("origin.log").display().to_string(),
        )
        .replace(postrotate, &format!("        kill -USR1 {}", edge.pid()));
    let config = dir.path().join("logrotate.conf");
    std::fs::write(&config, rules)?;
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(&config)
        .output()
        .expect("logrotate (scripts/test installs it)");
    assert!(
        out.status.success(),
        "logrotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(10), "the reopen", || {
        let reopened = edge.logs().contains("access log reopened");
        async move { reopened.then_some(()) }
    })
    .await?;
    get().await?;
    eventually(
        Duration::from_secs(10),
        "a line in the new file",
        || async { (lines(log.clone()).await? == 1).then_some(()) },
    )
    .await?;
    // delaycompress: the first rotation stays plain.
    assert_eq!(lines(dir.path().join("access.log.1")).await, Some(1));
    Ok(())
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = deploy().join("prometheus");
    for args in [
        ["check", "rules", "outpost-alerts.yml"],
        ["test", "rules", "outpost-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&rules)
            .output()
            .expect("promtool (scripts/test installs Debian's prometheus package)");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
