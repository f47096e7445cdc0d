//! The real origin's cache contract, kept by the real edge: pages and API reads carry
//! `CDN-Cache-Control` with stale windows the edge can honour, so an origin outage is answered
//! from cache (stale-if-error) and an expired page is answered at once while the edge refreshes
//! it (stale-while-revalidate).

use std::time::Duration;

use reqwest::StatusCode;

use super::{Response, get_site};
use crate::origin_flows::upload_form;
use outpost_e2e::{EdgeProcess, OriginProcess, TestDatabase, fixtures, http_client, wait};

const PAGES: [&str; 4] = ["/", "/gallery", "/api/images", "/api/filters"];

/// The real origin on SQLite with these `[cache]` windows, and an edge in front of it.
async fn stack(cache: &str) -> anyhow::Result<(TestDatabase, OriginProcess, EdgeProcess)> {
    let db = TestDatabase::sqlite()?;
    let origin = OriginProcess::start(&format!(
        "[cache]\n{cache}\n[database]\nurl = \"{}\"\n",
        db.url
    ))?;
    let edge = EdgeProcess::start(&[origin.addr], "")?;
    wait::eventually(
        Duration::from_secs(10),
        "the edge to see the origin",
        || async {
            let res = get_site(&edge, "/", &[]).await.ok()?;
            (res.status == 200).then_some(())
        },
    )
    .await?;
    Ok((db, origin, edge))
}

async fn get(edge: &EdgeProcess, path: &str) -> anyhow::Result<Response> {
    get_site(edge, path, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_stale_while_the_real_origin_is_down() -> anyhow::Result<()> {
    let (_db, origin, edge) =
        stack("page_edge_max_age = 1\nstale_while_revalidate = 0\nstale_if_error = 86400").await?;
    let mut stored = Vec::new();
    for path in PAGES {
        let first = get(&edge, path).await?;
        assert_eq!(first.status, 200, "{path}");
        let again = get(&edge, path).await?;
        assert!(again.is_hit(), "{path}: {}", again.cache_status());
        stored.push(again.text());
    }
    origin.stop()?;
    // The node stays in service: it is what keeps the site up now.
    let admin = http_client();
    wait::eventually(
        Duration::from_secs(5),
        "/origins to say none is healthy",
        || async {
            let res = admin.get(edge.admin_url("/origins")).send().await.ok()?;
            (res.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
        },
    )
    .await?;
    let ready = admin.get(edge.admin_url("/readyz")).send().await?;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "ready during an origin outage"
    );

    // From now on every answer is the stored page: fresh for a second, then stale-if-error.
    for (path, body) in PAGES.iter().zip(&stored) {
        wait::eventually(
            Duration::from_secs(5),
            &format!("{path} served stale-if-error"),
            || async {
                let res = get(&edge, path).await.ok()?;
                assert_eq!(
                    (res.status, &res.text()),
                    (200, body),
                    "{path} with the origin down: {}",
                    res.cache_status()
                );
                res.cache_status()
                    .ends_with("detail=stale-if-error")
                    .then_some(())
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_page_is_answered_at_once_and_refreshed_behind() -> anyhow::Result<()> {
    let (_db, origin, edge) = stack("page_edge_max_age = 1\nstale_while_revalidate = 600").await?;
    let before = get(&edge, "/api/images").await?;
    assert!(!before.text().contains("newcomer"));

    // The origin changes without purging (it has no edge admin URL here).
    let res = http_client()
        .post(origin.url("/api/images"))
        .multipart(upload_form(
            "newcomer",
            "photo.jpg",
            fixtures::jpeg(32, 24, 3),
        ))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CREATED);

    // Once the page expires, the next request gets the old page at once, marked as served
    // while revalidating; the refreshed one follows as a hit.
    wait::eventually(
        Duration::from_secs(5),
        "the expired page served stale-while-revalidate",
        || async {
            let res = get(&edge, "/api/images").await.ok()?;
            if res
                .cache_status()
                .ends_with("detail=stale-while-revalidate")
            {
                assert_eq!(res.text(), before.text(), "the stale copy, unchanged");
                return Some(());
            }
            assert!(res.is_hit(), "fresh until then: {}", res.cache_status());
            None
        },
    )
    .await?;
    wait::eventually(Duration::from_secs(5), "the background refresh", || async {
        let res = get(&edge, "/api/images").await.ok()?;
        (res.is_hit() && res.text().contains("newcomer")).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_of_an_unchanged_page_costs_the_real_origin_one_304() -> anyhow::Result<()> {
    let db = TestDatabase::sqlite()?;
    let memcached = outpost_e2e::Memcached::start()?;
    let origin = OriginProcess::start(&format!("[database]\nurl = \"{}\"\n", db.url))?;
    let edge = EdgeProcess::start(
        &[origin.addr],
        &super::purge::node_config("solo", &[&memcached], ""),
    )?;
    let counted = |class: &'static str| {
        let edge = &edge;
        async move {
            edge.metric(&format!(
                "outpost_origin_responses_total{{class=\"{class}\"}}"
            ))
            .await
            .unwrap_or(0.0)
        }
    };
    wait::eventually(
        Duration::from_secs(10),
        "the page through the edge",
        || async {
            let res = get(&edge, "/api/filters").await.ok()?;
            (res.status == 200).then_some(())
        },
    )
    .await?;
    assert!(get(&edge, "/api/filters").await?.is_hit());
    let (full, not_modified) = (counted("2xx").await, counted("3xx").await);

    let (status, receipt) = super::purge::purge(
        &edge,
        super::purge::TOKEN,
        r#"{"tags": ["filters"], "soft": true, "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    // Soft-purged: served stale while one conditional request goes to the origin, which answers
    // 304 (nothing changed); then hits, and no more origin requests.
    let first = get(&edge, "/api/filters").await?;
    assert_eq!(first.status, 200);
    wait::eventually(Duration::from_secs(5), "the origin's 304", || async {
        (counted("3xx").await > not_modified).then_some(())
    })
    .await?;
    for _ in 0..5 {
        let res = get(&edge, "/api/filters").await?;
        assert!(
            res.cache_status().ends_with("detail=l1"),
            "a fresh hit again: {}",
            res.cache_status()
        );
    }
    assert_eq!(
        (counted("2xx").await, counted("3xx").await),
        (full, not_modified + 1.0),
        "one 304 and nothing else reached the origin"
    );
    Ok(())
}
