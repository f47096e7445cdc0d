//! The origin as users and the edge see it, over TCP: upload → filter → front page → paginated
//! API → likes; purge requests after each write; graceful shutdown.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::on_both_backends;
use outpost_e2e::{Backend, OriginProcess, TestDatabase, fixtures, http_client};

on_both_backends!(
    upload_filter_front_page_pagination_and_likes,
    every_write_purges_its_tags_at_the_edge
);

pub(crate) async fn start(
    backend: Backend,
    extra: &str,
) -> anyhow::Result<(TestDatabase, OriginProcess)> {
    let db = TestDatabase::new(backend).await?;
    // `extra` goes first: its top-level keys must precede any [table].
    let origin = OriginProcess::start(&format!("{extra}\n[database]\nurl = \"{}\"\n", db.url))?;
    Ok((db, origin))
}

pub(crate) fn upload_form(name: &str, filename: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("name", name.to_owned())
        .part("file", Part::bytes(bytes).file_name(filename.to_owned()))
}

async fn upload(
    client: &reqwest::Client,
    origin: &OriginProcess,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Value> {
    let res = client
        .post(origin.url("/api/images"))
        .multipart(upload_form(name, "photo.jpg", bytes))
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

async fn upload_filter_front_page_pagination_and_likes(backend: Backend) -> anyhow::Result<()> {
    let (_db, origin) = start(backend, "").await?;
    let client = http_client();

    // Upload the real photo, then derive a sepia copy from it.
    let photo = upload(
        &client,
        &origin,
        "Raccoon",
        fixtures::fixture("raccoon.jpg"),
    )
    .await?;
    let photo_id = photo["id"].as_i64().context("id")?;
    assert_eq!(photo["parent_id"], Value::Null);
    let res = client
        .post(origin.url(&format!("/api/images/{photo_id}/filter")))
        .json(&serde_json::json!({"filter": "sepia"}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str()?.to_owned();
    let sepia: Value = res.json().await?;
    assert_eq!(location, format!("/api/images/{}", sepia["id"]));
    assert_eq!(sepia["parent_id"], photo_id);
    assert_eq!(sepia["name"], "Raccoon (sepia)");

    // The derived bytes are a real JPEG of the same size, at their content address.
    let media = client
        .get(origin.url(sepia["url"].as_str().context("url")?))
        .send()
        .await?;
    assert_eq!(media.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&media.bytes().await?)?;
    assert_eq!((decoded.width(), decoded.height()), (1024, 768));

    // The front page shows the new image first.
    let front = client.get(origin.url("/")).send().await?.text().await?;
    let first_slide = front.find("slide-1").context("slideshow")?;
    assert!(front[first_slide..].contains(sepia["url"].as_str().context("url")?));

    // 23 more uploads make 25 images; walk the API 7 at a time.
    for seed in 0..23 {
        upload(
            &client,
            &origin,
            &format!("Generated {seed}"),
            fixtures::jpeg(40, 30, seed),
        )
        .await?;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = origin.url("/api/images?limit=7");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await?.json().await?;
        pages += 1;
        for item in page["items"].as_array().context("items")? {
            seen.push(item["id"].as_i64().context("id")?);
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_next"], true);
                cursor = Some(c.to_owned());
            }
            None => {
                assert_eq!(page["has_next"], false);
                break;
            }
        }
    }
    assert_eq!(pages, 4, "25 images in pages of 7");
    let mut expected = seen.clone();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.dedup();
    assert_eq!(seen.len(), 25, "no image missing");
    assert_eq!(seen, expected, "newest first, no duplicates");

    // Likes increment, through the API and the page's form.
    for n in 1..=3 {
        let res: Value = client
            .post(origin.url(&format!("/api/images/{photo_id}/like")))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(res, serde_json::json!({"id": photo_id, "likes": n}));
    }
    let res = client
        .post(origin.url(&format!("/images/{photo_id}/like")))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let item: Value = client
        .get(origin.url(&format!("/api/images/{photo_id}")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(item["likes"], 4);
    let page = client
        .get(origin.url(&format!("/images/{photo_id}")))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains(r#"<strong id="likes">4</strong> likes"#));
    Ok(())
}

/// A real HTTP listener standing in for the edge admin API, recording each purge it receives.
#[derive(Clone, Default)]
pub(crate) struct PurgeRecorder {
    pub seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl PurgeRecorder {
    pub(crate) async fn start() -> anyhow::Result<(Self, String)> {
        use axum::routing::post;
        let rec = PurgeRecorder::default();
        let sink = rec.clone();
        let app = axum::Router::new().route(
            "/purge",
            post(move |headers: http::HeaderMap, body: axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    sink.seen.lock().map(|mut s| s.push((auth, body.0))).ok();
                    axum::Json(serde_json::json!({"id": "test"}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((rec, url))
    }

    pub(crate) fn take(&self) -> Vec<(String, Value)> {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

async fn every_write_purges_its_tags_at_the_edge(backend: Backend) -> anyhow::Result<()> {
    let (recorder, admin_url) = PurgeRecorder::start().await?;
    let (_db, origin) = start(
        backend,
        &format!("[purge]\nedge_admin_url = \"{admin_url}\"\ntoken = \"t0ken\"\ninline_timeout_ms = 5000\n"),
    )
    .await?;
    let client = http_client();
    let tags = |v: &[(String, Value)]| -> Vec<Value> {
        v.iter().map(|(_, b)| b["tags"].clone()).collect()
    };

    let image = upload(&client, &origin, "purge me", fixtures::jpeg(30, 20, 1)).await?;
    let id = image["id"].as_i64().context("id")?;
    // The first attempt is inline: it has arrived by the time the upload answered.
    let seen = recorder.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "Bearer t0ken");
    assert_eq!(
        tags(&seen),
        [serde_json::json!([
            "front",
            "gallery",
            format!("image-{id}")
        ])]
    );

    let res = client
        .post(origin.url(&format!("/api/images/{id}/filter")))
        .json(&serde_json::json!({"filter": "invert"}))
        .send()
        .await?;
    let child: Value = res.json().await?;
    let child_id = child["id"].as_i64().context("id")?;
    assert_eq!(
        tags(&recorder.take()),
        [serde_json::json!([
            "front",
            "gallery",
            format!("image-{child_id}"),
            format!("image-{id}")
        ])]
    );

    client
        .post(origin.url(&format!("/api/images/{id}/like")))
        .send()
        .await?;
    assert_eq!(
        tags(&recorder.take()),
        [serde_json::json!([format!("image-{id}")])]
    );

    // Failed writes purge nothing.
    let res = client
        .post(origin.url("/api/images"))
        .multipart(upload_form("bad", "x.jpg", fixtures::text_file()))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(recorder.take().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_origin_cleanly() -> anyhow::Result<()> {
    let (_db, origin) = start(Backend::Sqlite, "shutdown_grace_secs = 5\n").await?;
    assert_eq!(
        http_client()
            .get(origin.url("/healthz"))
            .send()
            .await?
            .status(),
        StatusCode::OK
    );
    let status = tokio::task::spawn_blocking(move || origin.stop()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}
