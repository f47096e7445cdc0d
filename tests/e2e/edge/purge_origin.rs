//! The real origin purging through a region of real edge nodes: three nodes (A, B, C) share a
//! memcached pool and the purge log in it; the origin sends its tag purges to A's admin API.
//! An upload at the origin must show on the very next front page (and API list) of every node:
//! at once on A (the purge is sent inline, before the upload answers), and on B and C as soon as
//! they applied the purge from the region's log.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{Response, get_site};
use outpost_e2e::process::free_port;
use outpost_e2e::{
    EdgeProcess, Memcached, OriginProcess, TestDatabase, fixtures, http_client, wait,
};

/// The site every node serves: the Host is part of the cache key, so every request sends it.
const TOKEN: &str = "region-admin-t0ken";
/// The cached pages that list images: the front page (tag `front`) and the API list (`gallery`).
const LISTS: [&str; 2] = ["/", "/api/images"];
/// How long B and C may take to apply a purge from the log (polled every 100 ms).
const PROPAGATION: Duration = Duration::from_secs(2);

/// A node of the region: its own name (its identity in the purge log), the admin token, and the
/// region's memcached pool.
fn node_config(name: &str, memcached: &Memcached) -> String {
    format!(
        "[server]\nname = \"{name}\"\n[admin]\ntoken = \"{TOKEN}\"\n\
         [l2]\nservers = [\"{}\"]\ndeadline_ms = 200\nchunk_deadline_ms = 500\n",
        memcached.addr
    )
}

/// A `GET` through `edge` for the site. Every edge answer is checked for the tag headers, which
/// are addressed to the edge and must never reach a client.
async fn get(edge: &EdgeProcess, path: &str) -> anyhow::Result<Response> {
    let res = get_site(edge, path, &[])
        .await
        .with_context(|| format!("GET {path}"))?;
    for leaked in ["surrogate-key", "cache-tag"] {
        anyhow::ensure!(
            !res.headers.contains_key(leaked),
            "GET {path}: the edge passed {leaked}: {:?} to the client",
            res.headers.get(leaked)
        );
    }
    anyhow::ensure!(
        res.status == 200,
        "GET {path} answered {} ({}): {}",
        res.status,
        res.cache_status(),
        res.text()
    );
    Ok(res)
}

const APPLIED: &str = "outpost_purge_entries_applied_total";
const ACCEPTED: &str = "outpost_purges_total";
const FROM_ORIGIN: &str = "outpost_origin_responses_total";

/// Waits (bounded) until `edge` has applied more than `than` purge log entries.
async fn applied_more_than(edge: &EdgeProcess, name: &str, than: f64) -> anyhow::Result<()> {
    wait::eventually(
        PROPAGATION,
        &format!("{name} to apply the purge from the log (applied > {than})"),
        || async {
            edge.metric(APPLIED)
                .await
                .is_ok_and(|n| n > than)
                .then_some(())
        },
    )
    .await
    .map_err(|e| e.context(format!("{name}'s log:\n{}", tail(edge))))
}

/// The part of a list worth reading in a failure message: the page's `<main>` (not its styles),
/// at most 2000 characters.
fn excerpt(res: &Response) -> String {
    let text = res.text();
    let start = text.find("<main").unwrap_or(0);
    text[start..].chars().take(2000).collect()
}

/// The last lines of a node's log, for failure messages.
fn tail(edge: &EdgeProcess) -> String {
    let logs = edge.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn upload(origin: &OriginProcess, name: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
    let form = Form::new()
        .text("name", name.to_owned())
        .part("file", Part::bytes(bytes).file_name("photo.jpg"));
    let res = http_client()
        .post(origin.url("/api/images"))
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(
        res.status() == StatusCode::CREATED,
        "upload answered {}: {}",
        res.status(),
        res.text().await?
    );
    Ok(res.json().await?)
}

/// An uploaded image: its id and media URL.
struct Image {
    id: i64,
    url: String,
}

impl Image {
    fn from_json(v: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            id: v["id"].as_i64().context("id")?,
            url: v["url"].as_str().context("url")?.to_owned(),
        })
    }

    /// True when the list page `path` shows this image: on the front page its link and picture,
    /// in the API list its item.
    fn shown_in(&self, path: &str, res: &Response) -> bool {
        let text = res.text();
        if path == "/" {
            text.contains(&format!("href=\"/images/{}\"", self.id))
                && text.contains(&format!("src=\"{}\"", self.url))
        } else {
            serde_json::from_str::<Value>(&text).is_ok_and(|list| {
                list["items"].as_array().is_some_and(|items| {
                    items
                        .iter()
                        .any(|i| i["id"] == self.id && i["url"] == self.url.as_str())
                })
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_at_the_origin_shows_on_the_next_request_to_every_node_of_the_region()
-> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    // The origin's config names A's admin address and each node's names the origin: so the
    // nodes start first, in front of a free port the origin then listens on (their health
    // checks find it up; `/readyz` below waits for that).
    let origin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let names = ["A", "B", "C"];
    let mut nodes = Vec::new();
    for name in names {
        let node = EdgeProcess::start(
            &[origin_addr],
            &node_config(&format!("edge-{name}"), &memcached),
        )
        .with_context(|| format!("starting node {name}"))?;
        nodes.push(node);
    }
    let db = TestDatabase::sqlite()?;
    let origin = OriginProcess::start(&format!(
        "listen = \"{origin_addr}\"\n\
         [purge]\nedge_admin_url = \"{}\"\ntoken = \"{TOKEN}\"\ninline_timeout_ms = 5000\n\
         [database]\nurl = \"{}\"\n",
        nodes[0].admin_url(""),
        db.url
    ))?;
    for (name, node) in names.iter().zip(&nodes) {
        wait::eventually(
            Duration::from_secs(10),
            &format!("node {name} to see the origin healthy"),
            || async {
                let res = http_client().get(node.admin_url("/readyz")).send().await;
                res.is_ok_and(|r| r.status() == StatusCode::OK)
                    .then_some(())
            },
        )
        .await?;
    }

    // One image to start with. Its purge goes through A and the log like any other; wait until
    // B and C applied it, so the counts taken below start after it.
    let first = Image::from_json(&upload(&origin, "first", fixtures::jpeg(40, 30, 1)).await?)?;
    assert_eq!(
        nodes[0].metric(ACCEPTED).await?,
        1.0,
        "A accepted the first upload's purge before the upload answered; origin log:\n{}",
        origin.logs()
    );
    for (name, node) in names.iter().zip(&nodes).skip(1) {
        applied_more_than(node, name, 0.0).await?;
    }

    // The origin tags both lists; the edge keeps the tags to itself (checked in `get`).
    let direct = http_client().get(origin.url("/")).send().await?;
    let tags = direct.headers().get("surrogate-key").cloned();
    assert!(
        tags.as_ref()
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| t.split(' ').any(|t| t == "front")),
        "the origin tags its front page: {tags:?}"
    );

    // Both lists, cached on every node: the first round fills the caches, the second is
    // answered by each node without asking the origin.
    for (name, node) in names.iter().zip(&nodes) {
        for path in LISTS {
            let res = get(node, path).await?;
            assert!(
                first.shown_in(path, &res),
                "node {name} {path} ({}) lacks the first image: {}",
                res.cache_status(),
                excerpt(&res)
            );
        }
    }
    let mut asked = 0.0;
    for node in &nodes {
        asked += node.metric(FROM_ORIGIN).await?;
    }
    for (name, node) in names.iter().zip(&nodes) {
        for path in LISTS {
            let res = get(node, path).await?;
            assert!(
                res.is_hit(),
                "node {name} {path} is cached: {}",
                res.cache_status()
            );
            assert!(first.shown_in(path, &res), "node {name} {path}");
        }
    }
    let mut asked_again = 0.0;
    for node in &nodes {
        asked_again += node.metric(FROM_ORIGIN).await?;
    }
    assert_eq!(asked_again, asked, "cache hits did not ask the origin");

    let mut applied_before = Vec::new();
    for node in &nodes {
        applied_before.push(node.metric(APPLIED).await?);
    }
    let accepted_before = nodes[0].metric(ACCEPTED).await?;

    // A new image, uploaded at the origin, which purges `front`, `gallery` and `image-<id>`
    // through A before it answers.
    let new = Image::from_json(&upload(&origin, "new", fixtures::jpeg(40, 30, 2)).await?)?;
    assert!(new.id != first.id);
    assert_eq!(
        nodes[0].metric(ACCEPTED).await?,
        accepted_before + 1.0,
        "A accepted the upload's purge before the upload answered; origin log:\n{}",
        origin.logs()
    );

    // A applied it on accepting it: its next requests show the new image.
    for path in LISTS {
        let res = get(&nodes[0], path).await?;
        assert!(
            new.shown_in(path, &res),
            "node A {path} ({}) right after the upload lacks image {}: {}\nA's log:\n{}",
            res.cache_status(),
            new.id,
            excerpt(&res),
            tail(&nodes[0])
        );
    }

    // B and C apply it from the log within a few polls; then one request each shows it.
    for (i, (name, node)) in names.iter().zip(&nodes).enumerate().skip(1) {
        applied_more_than(node, name, applied_before[i]).await?;
        for path in LISTS {
            let res = get(node, path).await?;
            assert!(
                new.shown_in(path, &res),
                "node {name} {path} ({}) after applying the purge lacks image {}: {}\n\
                 {name}'s log:\n{}",
                res.cache_status(),
                new.id,
                excerpt(&res),
                tail(node)
            );
        }
    }
    Ok(())
}
