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
