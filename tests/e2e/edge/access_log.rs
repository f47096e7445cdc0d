//! The access log: one line per request on the edge (proxied and hit-path answers alike) and on
//! the origin, joined by the request id the edge sends; text and JSON; a file that SIGUSR1 reopens
//! after logrotate moved it. (A bad `[access_log]` is refused by key: edge/tests/cli.rs.)

use std::time::Duration;

use outpost_e2e::process::Signal;
use outpost_e2e::wait::eventually;
use outpost_e2e::{EdgeProcess, OriginProcess, Reply, ScriptedOrigin, TestDatabase, http_client};

use super::Response;

/// The value of ` key=` in a text line, without its quotes.
fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

fn millis(line: &str, key: &str) -> f64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {line}"))
}

/// Waits until `lines()` holds `n` lines for which `wanted` holds; returns them.
async fn logged(
    what: &str,
    n: usize,
    lines: impl Fn() -> Vec<String>,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    eventually(Duration::from_secs(10), what, || {
        let found: Vec<String> = lines().into_iter().filter(|l| wanted(l)).collect();
        async move { (found.len() >= n).then_some(found) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_and_a_hit_are_logged_and_the_miss_joins_the_origins_line() -> anyhow::Result<()> {
    let db = TestDatabase::sqlite()?;
    let origin = OriginProcess::start(&format!("[database]\nurl = \"{}\"\n", db.url))?;
    let edge = EdgeProcess::start(&[origin.addr], "")?;
    let get = |agent: &'static str| {
        http_client()
            .get(edge.url("/api/filters"))
            .header("User-Agent", agent)
            .header("Referer", "https://ref.example/a")
            // Not a trusted proxy's: replaced by the edge's own.
            .header("X-Request-Id", "forged")
            .send()
    };
    let miss = Response::read(get("client \"a\"").await?).await?;
    let hit = Response::read(get("client-b").await?).await?;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(miss.body, hit.body);
    assert!(edge.metric("outpost_hit_path_answers_total").await? >= 1.0);

    let request = "\"GET /api/filters HTTP/1.1\"";
    let lines = logged(
        "the edge's two lines",
        2,
        || edge.access_lines(),
        |l| l.contains(request),
    )
    .await?;
    let (miss_line, hit_line) = (&lines[0], &lines[1]);
    let len = miss.body.len();
    for line in [miss_line, hit_line] {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(&format!("{request} 200 {len} \"https://ref.example/a\"")),
            "{line}"
        );
        assert!(
            millis(line, "ttfb_ms") <= millis(line, "total_ms"),
            "{line}"
        );
        let id = field(line, "request_id").unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
    }
    // What a client chose is escaped: no quote of its own ends the field.
    assert!(miss_line.contains(r#""client \x22a\x22""#), "{miss_line}");
    assert_eq!(field(miss_line, "cache"), Some("miss"));
    assert_eq!(field(miss_line, "tier"), Some("-"));
    let origin_addr = origin.addr.to_string();
    assert_eq!(field(miss_line, "origin"), Some(origin_addr.as_str()));
    assert!(millis(miss_line, "origin_ms") <= millis(miss_line, "total_ms"));
    assert!(hit_line.contains("\"client-b\""), "{hit_line}");
    assert_eq!(field(hit_line, "cache"), Some("hit"));
    assert_eq!(field(hit_line, "tier"), Some("l1"));
    assert_eq!(field(hit_line, "origin"), Some("-"));
    assert_ne!(
        field(hit_line, "request_id"),
        field(miss_line, "request_id")
    );

    // The origin saw the miss only, and logged it under the edge's id.
    let origin_lines = logged(
        "the origin's line",
        1,
        || origin.access_lines(),
        |l| l.contains(request),
    )
    .await?;
    assert_eq!(origin_lines.len(), 1, "{origin_lines:#?}");
    assert_eq!(
        field(&origin_lines[0], "request_id"),
        field(miss_line, "request_id"),
        "{origin_lines:#?}"
    );
    assert!(
        origin_lines[0].contains(&format!("{request} 200 {len} ")),
        "{origin_lines:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_go_to_a_file_that_sigusr1_reopens_and_keep_a_trusted_proxys_id()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let origin = ScriptedOrigin::start().await?;
    origin.route("/a", Reply::ok("max-age=600", "aaaa"));
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
             [access_log]\nformat = \"json\"\npath = \"{}\"\n",
            path.display()
        ),
    )?;
    let via_balancer = |id: &'static str, client: &'static str| {
        http_client()
            .get(edge.url("/a"))
            .header("X-Request-Id", id)
            .header("X-Forwarded-For", client)
            .send()
    };
    assert_eq!(via_balancer("lb-1", "203.0.113.9").await?.status(), 200);
    assert_eq!(via_balancer("lb-2", "203.0.113.10").await?.status(), 200);
    // The balancer's id reached the origin with the request.
    let asked = origin.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].header("x-request-id"), Some("lb-1"));

    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let lines = eventually(Duration::from_secs(10), "two JSON lines", || {
        let lines = read(&path);
        async move { (lines.len() >= 2).then_some(lines) }
    })
    .await?;
    assert_eq!(lines[0]["request_id"], "lb-1");
    assert_eq!(lines[0]["client"], "203.0.113.9");
    assert_eq!(lines[0]["cache"], "miss");
    assert_eq!(lines[0]["bytes"], 4);
    assert!(lines[0]["origin_ms"].as_f64().is_some(), "{}", lines[0]);
    assert_eq!(lines[1]["request_id"], "lb-2");
    assert_eq!(lines[1]["client"], "203.0.113.10");
    assert_eq!(lines[1]["cache"], "hit");
    assert_eq!(lines[1]["tier"], "l1");
    assert!(edge.access_lines().is_empty(), "nothing on stdout");

    // logrotate: move the file, then SIGUSR1; the next line starts the new file.
    std::fs::rename(&path, &rotated)?;
    edge.signal(Signal::SIGUSR1)?;
    eventually(Duration::from_secs(10), "the reopen", || {
        let done = edge.logs().contains("access log reopened");
        async move { done.then_some(()) }
    })
    .await?;
    assert_eq!(via_balancer("lb-3", "203.0.113.11").await?.status(), 200);
    let fresh = eventually(Duration::from_secs(10), "a line in the new file", || {
        let lines = read(&path);
        async move { (!lines.is_empty()).then_some(lines) }
    })
    .await?;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["request_id"], "lb-3");
    assert_eq!(read(&rotated).len(), 2, "the moved file keeps its lines");
    // SIGUSR1 reopens the log only; SIGHUP would also have reloaded the config.
    assert!(!edge.logs().contains("config reloaded"), "{}", edge.logs());
    Ok(())
}
