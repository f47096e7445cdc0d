//! Purging end to end: three edge nodes of a region sharing real memcached, a purge through
//! one node, and every node stops serving the object (hard) or serves it only as stale (soft).
//! Receipts, auth, bad input, a restarted or frozen memcached, and forwarding to a second region.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Response, SITE, get_site};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, http_client, wait};

pub(super) const TOKEN: &str = "purge-t0ken";

/// A node of a region: its name, the region's memcached servers, and `extra` TOML.
pub(super) fn node_config(name: &str, servers: &[&Memcached], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|m| format!("\"{}\"", m.addr)).collect();
    format!(
        "[server]\nname = \"{name}\"\n[admin]\ntoken = \"{TOKEN}\"\n\
         [l2]\nservers = [{}]\ndeadline_ms = 200\nchunk_deadline_ms = 500\n{extra}",
        list.join(", ")
    )
}

/// Serves `path` as `{path} v{n}` (n counts origin requests for it), cached for an hour, with
/// these extra response fields.
fn versioned(origin: &ScriptedOrigin, path: &str, fields: &[(&str, &str)]) {
    let n = Arc::new(AtomicUsize::new(0));
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let owned = path.to_owned();
    origin.route_fn(path, move |_| {
        let v = n.fetch_add(1, Ordering::SeqCst) + 1;
        let mut reply = Reply::ok("max-age=3600", format!("{owned} v{v}"));
        for (k, val) in &fields {
            reply = reply.header(k, val);
        }
        reply
    });
}

async fn get(edge: &EdgeProcess, path: &str) -> anyhow::Result<Response> {
    get_site(edge, path, &[]).await
}

/// The origin's version number in a [`versioned`] body.
fn version(r: &Response) -> usize {
    r.text()
        .rsplit(" v")
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `r` was fetched from the origin after it had answered `before` times: not an old copy. (A
/// node may serve it as a hit: another node's refill reached the shared tier first.)
fn fetched_after(r: &Response, before: usize) -> bool {
    version(r) > before
}

/// `POST /purge` on `edge`'s admin listener: status and JSON body.
pub(super) async fn purge(
    edge: &EdgeProcess,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let res = http_client()
        .post(edge.admin_url("/purge"))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

/// Until every node is listed as live (heartbeats land every few polls).
async fn all_live(nodes: &[&EdgeProcess], n: usize) -> anyhow::Result<()> {
    wait::eventually(
        Duration::from_secs(10),
        "every node's heartbeat",
        || async {
            // A purge of a URL nobody asked for: its receipt lists the live nodes.
            let (status, receipt) = purge(
                nodes[0],
                TOKEN,
                r#"{"urls": ["http://nothing.example/"], "wait": true}"#,
            )
            .await
            .ok()?;
            (status == 200 && names(&receipt["applied"]).len() == n).then_some(())
        },
    )
    .await
}

struct Region {
    memcached: Memcached,
    origin: ScriptedOrigin,
    nodes: Vec<EdgeProcess>,
}

async fn region(extra: &str) -> anyhow::Result<Region> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(EdgeProcess::start(
            &[origin.addr],
            &node_config(name, &[&memcached], extra),
        )?);
    }
    let refs: Vec<&EdgeProcess> = nodes.iter().collect();
    all_live(&refs, 3).await?;
    Ok(Region {
        memcached,
        origin,
        nodes,
    })
}

impl Region {
    /// Every node has `path` cached: its second request is a hit.
    async fn warm(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut body = String::new();
        for node in &self.nodes {
            get_site(node, path, headers).await?;
            let again = get_site(node, path, headers).await?;
            anyhow::ensure!(
                again.is_hit(),
                "{path} not cached: {}",
                again.cache_status()
            );
            body = again.text();
        }
        Ok(body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_purges_by_url_prefix_tag_and_all_reach_every_node() -> anyhow::Result<()> {
    let r = region("").await?;
    versioned(&r.origin, "/u", &[("Vary", "Accept-Language")]);
    versioned(&r.origin, "/img/1", &[]);
    versioned(&r.origin, "/imgs", &[]);
    versioned(&r.origin, "/t", &[("Surrogate-Key", "front image-7")]);
    versioned(&r.origin, "/k", &[("Cache-Tag", "gallery,image-8")]);
    let (en, fr) = ([("Accept-Language", "en")], [("Accept-Language", "fr")]);
    for path in ["/img/1", "/imgs", "/t", "/k"] {
        r.warm(path, &[]).await?;
    }
    r.warm("/u", &en).await?;
    r.warm("/u", &fr).await?;
    let origin_before = r.origin.count("/u");

    // URL: every variant, on every node; receipts list all three.
    let (status, receipt) = purge(
        &r.nodes[0],
        TOKEN,
        r#"{"urls": ["http://images.example/u"], "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(names(&receipt["applied"]), ["a", "b", "c"], "{receipt}");
    assert_eq!(names(&receipt["pending"]), Vec::<String>::new());
    assert_eq!(receipt["complete"], json!(true));
    for node in &r.nodes {
        for lang in [&en, &fr] {
            let res = get_site(node, "/u", lang).await?;
            assert!(
                fetched_after(&res, origin_before),
                "purged variant served: {} {}",
                res.text(),
                res.cache_status()
            );
        }
    }
    // The receipt is there later too, from any node.
    let id = receipt["id"].as_str().unwrap_or_default().to_owned();
    let later: Value = http_client()
        .get(r.nodes[2].admin_url(&format!("/purge/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(later["id"], json!(id));
    assert_eq!(names(&later["applied"]), ["a", "b", "c"]);

    // Prefix: `/img/…` goes, `/imgs` stays.
    let (img, imgs) = (r.origin.count("/img/1"), r.origin.count("/imgs"));
    let (status, _) = purge(
        &r.nodes[1],
        TOKEN,
        r#"{"prefixes": ["http://images.example/img/"], "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200);
    for node in &r.nodes {
        assert!(fetched_after(&get(node, "/img/1").await?, img));
        assert!(get(node, "/imgs").await?.is_hit(), "outside the prefix");
    }
    assert_eq!(r.origin.count("/imgs"), imgs);

    // Tags, from either field; `/t` and `/k` go.
    let (t, k) = (r.origin.count("/t"), r.origin.count("/k"));
    let (status, _) = purge(
        &r.nodes[2],
        TOKEN,
        r#"{"tags": ["image-7", "gallery"], "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200);
    for node in &r.nodes {
        for (path, before) in [("/t", t), ("/k", k)] {
            let res = get(node, path).await?;
            assert!(fetched_after(&res, before), "{path} tagged, still served");
            assert!(
                res.headers.get("surrogate-key").is_none()
                    && res.headers.get("cache-tag").is_none(),
                "purge tags are for the edge, not clients"
            );
        }
    }

    // Everything.
    let imgs = r.origin.count("/imgs");
    let (status, _) = purge(&r.nodes[0], TOKEN, r#"{"all": true, "wait": true}"#).await?;
    assert_eq!(status, 200);
    for node in &r.nodes {
        let res = get(node, "/imgs").await?;
        assert!(
            fetched_after(&res, imgs),
            "everything purged: {}",
            res.cache_status()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_serves_stale_only_while_revalidating() -> anyhow::Result<()> {
    let r = region("").await?;
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    r.origin.route_fn("/s", move |_| {
        let v = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::ok(
            "max-age=3600, stale-while-revalidate=60",
            format!("/s v{v}"),
        )
        .header("Surrogate-Key", "soft")
    });
    versioned(&r.origin, "/plain", &[("Surrogate-Key", "soft")]);
    assert_eq!(r.warm("/s", &[]).await?, "/s v1");
    r.warm("/plain", &[]).await?;

    let (status, receipt) = purge(
        &r.nodes[0],
        TOKEN,
        r#"{"tags": ["soft"], "soft": true, "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["soft"], json!(true));
    // Node B: the old copy, marked stale, while a fresh one is fetched in the background.
    let stale = get(&r.nodes[1], "/s").await?;
    assert_eq!(stale.text(), "/s v1");
    assert!(
        stale.cache_status().contains("stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    wait::eventually(Duration::from_secs(5), "the background refresh", || async {
        let res = get(&r.nodes[1], "/s").await.ok()?;
        (res.text() == "/s v2").then_some(())
    })
    .await?;
    // Without a stale-while-revalidate window, a soft-purged object is revalidated first.
    let res = get(&r.nodes[2], "/plain").await?;
    assert!(
        res.cache_status().contains("fwd=stale"),
        "{}",
        res.cache_status()
    );
    assert_eq!(res.text(), "/plain v2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_and_bad_input_purge_nothing_and_say_why() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    versioned(&origin, "/x", &[]);
    let edge = EdgeProcess::start(
        &[origin.addr],
        &node_config("a", &[&memcached], "[purge]\nallow_networks = []\n"),
    )?;
    get(&edge, "/x").await?;

    let everything = r#"{"all": true}"#;
    let (status, body) = purge(&edge, "not-the-token", everything).await?;
    assert_eq!(status, 401, "{body}");
    let no_auth = http_client()
        .post(edge.admin_url("/purge"))
        .body(everything)
        .send()
        .await?;
    assert_eq!(no_auth.status().as_u16(), 401);
    assert_eq!(
        no_auth
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );

    let cases = [
        (r#"{"urls": ["http://images.example/x""#, "malformed JSON"),
        (r#"{"urls": "http://images.example/x"}"#, "urls"),
        (r#"{"urls": ["/x"]}"#, "urls[0]"),
        (
            r#"{"urls": ["http://images.example/x"], "hard": true}"#,
            "hard",
        ),
        (r#"{"tags": ["two words"]}"#, "tags[0]"),
        (r#"{}"#, "nothing to purge"),
        (r#"{"all": true} and more"#, "malformed JSON"),
        (r#"[[], [], [], true]"#, "malformed JSON"),
    ];
    for (body, names_it) in cases {
        let (status, answer) = purge(&edge, TOKEN, body).await?;
        assert_eq!(status, 400, "{body} → {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(names_it),
            "{body}: error {error:?} should name {names_it}"
        );
    }
    // Still cached: nothing above purged anything.
    assert!(get(&edge, "/x").await?.is_hit());
    assert_eq!(origin.count("/x"), 1);

    // PURGE on the proxy listener: refused without the token (no network is allowed)…
    let purge_method = reqwest::Method::from_bytes(b"PURGE")?;
    let refused = http_client()
        .request(purge_method.clone(), edge.url("/x"))
        .header("Host", SITE)
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 401);
    assert!(get(&edge, "/x").await?.is_hit());
    // …and done with it.
    let done = http_client()
        .request(purge_method, edge.url("/x"))
        .header("Host", SITE)
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(done.status().as_u16(), 200);
    let res = get(&edge, "/x").await?;
    assert!(!res.is_hit());
    assert_eq!(res.text(), "/x v2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_from_an_allowed_network_needs_no_token() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    versioned(&origin, "/y", &[]);
    let edge = EdgeProcess::start(
        &[origin.addr],
        &node_config(
            "a",
            &[&memcached],
            "[purge]\nallow_networks = [\"127.0.0.0/8\"]\n",
        ),
    )?;
    get(&edge, "/y").await?;
    assert!(get(&edge, "/y").await?.is_hit());
    let res = http_client()
        .request(reqwest::Method::from_bytes(b"PURGE")?, edge.url("/y"))
        .header("Host", SITE)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 200);
    assert!(!get(&edge, "/y").await?.is_hit());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restartedmemcached_makes_every_node_drop_its_l1() -> anyhow::Result<()> {
    let mut r = region("").await?;
    versioned(&r.origin, "/r", &[]);
    r.warm("/r", &[]).await?;
    let before = r.origin.count("/r");
    // Every restart is seen by every node within `purge.max_lag` (2 s here), whether or not a
    // purge was ever written to the log.
    for restart in 1..=3 {
        r.memcached.restart()?;
        for node in &r.nodes {
            wait::eventually(
                Duration::from_secs(2),
                "the node to see the gap within purge.max_lag",
                || async {
                    let gaps = node.metric("outpost_purge_log_gaps_total").await.ok()?;
                    (gaps >= f64::from(restart)).then_some(())
                },
            )
            .await?;
        }
    }
    // Purges written to the old log may be lost: nobody serves its old copy unasked.
    let first = get(&r.nodes[0], "/r").await?;
    assert!(!first.is_hit(), "{}", first.cache_status());
    assert_eq!(r.origin.count("/r"), before + 1);
    for node in &r.nodes[1..] {
        let res = get(node, "/r").await?;
        assert!(
            !res.cache_status().contains("detail=l1"),
            "L1 kept across the gap: {}",
            res.cache_status()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_log_revalidates_instead_of_serving() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    origin.route_fn("/e", move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::new(304).header("ETag", "\"v1\"")
        } else {
            Reply::ok(
                "max-age=3600, stale-while-revalidate=600, stale-if-error=600",
                "e v1",
            )
            .header("ETag", "\"v1\"")
        }
    });
    let edge = EdgeProcess::start(
        &[origin.addr],
        &node_config(
            "a",
            &[&memcached],
            "[purge]\npoll_interval_ms = 50\nmax_lag_ms = 500\n",
        ),
    )?;
    get(&edge, "/e").await?;
    assert!(get(&edge, "/e").await?.is_hit());
    memcached.freeze()?;
    let lagging = wait::eventually(
        Duration::from_secs(5),
        "the node to fall behind",
        || async {
            let lag = edge.metric("outpost_purge_lag_seconds").await.ok()?;
            (lag > 0.5).then_some(())
        },
    )
    .await;
    let res = get(&edge, "/e").await;
    memcached.thaw()?;
    lagging?;
    let res = res?;
    // Revalidated with the origin (304), not served from cache on trust, not even as stale.
    assert_eq!(res.text(), "e v1");
    assert!(
        res.cache_status().contains("fwd=stale; fwd-status=304"),
        "{}",
        res.cache_status()
    );
    let asked = origin
        .requests()
        .iter()
        .filter(|r| r.path() == "/e" && r.header("if-none-match").is_some())
        .count();
    assert_eq!(asked, 1);
    // Back in sync: hits again.
    wait::eventually(Duration::from_secs(5), "the node to catch up", || async {
        let res = get(&edge, "/e").await.ok()?;
        res.is_hit().then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_is_forwarded_to_the_other_region() -> anyhow::Result<()> {
    let (eu_pool, us_pool) = (Memcached::start()?, Memcached::start()?);
    let origin = ScriptedOrigin::start().await?;
    versioned(&origin, "/f", &[]);
    let us = EdgeProcess::start(
        &[origin.addr],
        &node_config("us-1", &[&us_pool], "[purge]\nregion = \"us\"\n"),
    )?;
    let eu = EdgeProcess::start(
        &[origin.addr],
        &node_config(
            "eu-1",
            &[&eu_pool],
            &format!(
                "[purge]\nregion = \"eu\"\n[[purge.regions]]\nname = \"us\"\n\
                 admin_url = \"http://{}\"\ntoken = \"{TOKEN}\"\n",
                us.admin
            ),
        ),
    )?;
    all_live(&[&us], 1).await?;
    all_live(&[&eu], 1).await?;
    for node in [&eu, &us] {
        get(node, "/f").await?;
        assert!(get(node, "/f").await?.is_hit());
    }
    let (status, receipt) = purge(
        &eu,
        TOKEN,
        r#"{"urls": ["http://images.example/f"], "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["region"], json!("eu"));
    assert_eq!(
        receipt["regions"]["us"]["state"],
        json!("forwarded"),
        "{receipt}"
    );
    assert_eq!(names(&receipt["regions"]["us"]["applied"]), ["us-1"]);
    assert_eq!(receipt["complete"], json!(true));
    for node in [&eu, &us] {
        assert!(!get(node, "/f").await?.is_hit(), "purged in both regions");
    }
    Ok(())
}
