//! Route tests in-process: `origin::app(state)` driven with `oneshot`, no socket. They pin the
//! cache contract of every route, conditional requests, the form flows, error formats, and
//! back-pressure from the image worker pool.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use origin::AppState;
use origin::config::OriginConfig;
use origin::purge::Purger;
use origin::store::Store;
use origin::workers::WorkerPool;
use outpost_e2e::{TestDatabase, fixtures};
use tower::ServiceExt;

/// What browsers are told about pages and API reads.
const PAGE_CC: &str = "public, max-age=0";
/// What the edge is told (RFC 9213): no `s-maxage`, so its stale windows hold.
const PAGE_CDN_CC: &str = "max-age=60, stale-while-revalidate=60, stale-if-error=86400";

struct App {
    state: AppState,
    db: TestDatabase,
}

impl App {
    async fn new() -> Self {
        Self::with_workers(WorkerPool::new(1, 4).expect("pool")).await
    }

    async fn with_workers(workers: WorkerPool) -> Self {
        let db = TestDatabase::sqlite().expect("sqlite");
        let store = Store::connect(&db.url, 4).await.expect("store");
        let state = AppState::new(store, workers, Purger::disabled(), &OriginConfig::default());
        App { state, db }
    }

    async fn send(&self, req: Request<Body>) -> Response {
        origin::app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible")
    }

    async fn get(&self, uri: &str) -> Response {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    async fn get_if_none_match(&self, uri: &str, etag: &str) -> Response {
        let req = Request::get(uri)
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty());
        self.send(req.expect("request")).await
    }

    async fn post_form(&self, uri: &str, form: &str) -> Response {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()));
        self.send(req.expect("request")).await
    }

    async fn post_json(&self, uri: &str, json: &str) -> Response {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_owned()));
        self.send(req.expect("request")).await
    }

    async fn upload(&self, uri: &str, name: Option<&str>, file: Option<(&str, &[u8])>) -> Response {
        let (content_type, body) = multipart(name, file);
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body));
        self.send(req.expect("request")).await
    }

    /// Uploads a small JPEG through the API; its id.
    async fn seed(&self, name: &str, seed: u32) -> i64 {
        let jpeg = fixtures::jpeg(32, 24, seed);
        let res = self
            .upload("/api/images", Some(name), Some(("a.jpg", &jpeg)))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        json(res).await["id"].as_i64().expect("id")
    }

    async fn counts(&self) -> (i64, i64) {
        self.db.counts().await.expect("counts")
    }
}

fn multipart(name: Option<&str>, file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----outpost-test-boundary";
    let mut body = Vec::new();
    if let Some(name) = name {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn bytes(res: Response) -> Vec<u8> {
    res.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

async fn text(res: Response) -> String {
    String::from_utf8(bytes(res).await).expect("utf-8")
}

async fn json(res: Response) -> serde_json::Value {
    serde_json::from_slice(&bytes(res).await).expect("json")
}

fn header<'a>(res: &'a Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn pages_are_shared_cacheable_and_tagged_with_what_they_show() {
    let app = App::new().await;
    let a = app.seed("first", 1).await;
    let b = app.seed("second", 2).await;
    let front = app.get("/").await;
    assert_eq!(front.status(), StatusCode::OK);
    assert_eq!(header(&front, "cache-control"), PAGE_CC);
    assert_eq!(header(&front, "cdn-cache-control"), PAGE_CDN_CC);
    assert_eq!(
        header(&front, "surrogate-key"),
        format!("front image-{b} image-{a}")
    );
    assert!(header(&front, "content-type").starts_with("text/html"));
    let gallery = app.get("/gallery").await;
    assert_eq!(
        header(&gallery, "surrogate-key"),
        format!("gallery image-{b} image-{a}")
    );
    let page = app.get(&format!("/images/{a}")).await;
    assert_eq!(header(&page, "cache-control"), PAGE_CC);
    assert_eq!(header(&page, "surrogate-key"), format!("image-{a}"));
    let api = app.get("/api/images").await;
    assert_eq!(header(&api, "cache-control"), PAGE_CC);
    assert_eq!(header(&api, "cdn-cache-control"), PAGE_CDN_CC);
    assert_eq!(
        header(&api, "surrogate-key"),
        format!("gallery image-{b} image-{a}")
    );
    let filters = app.get("/api/filters").await;
    assert_eq!(header(&filters, "surrogate-key"), "filters");
    assert_eq!(
        json(filters).await,
        serde_json::json!({"filters": ["grayscale", "sepia", "invert", "blur", "sharpen", "vintage", "ocean", "sunset"]})
    );
}

#[tokio::test]
async fn forms_writes_and_health_are_never_shared() {
    let app = App::new().await;
    let id = app.seed("x", 1).await;
    for res in [
        app.get("/upload").await,
        app.get("/healthz").await,
        app.get("/readyz").await,
        app.post_form(&format!("/images/{id}/like"), "").await,
        app.post_json(&format!("/api/images/{id}/like"), "").await,
        app.post_json(&format!("/api/images/{id}/filter"), r#"{"filter":"nope"}"#)
            .await,
        app.get("/no/such/page").await,
    ] {
        assert_eq!(
            header(&res, "cache-control"),
            "private, no-store",
            "{:?}",
            res.status()
        );
        assert!(res.headers().get("surrogate-key").is_none());
    }
}

#[tokio::test]
async fn media_is_immutable_and_answers_conditionals_without_the_bytes() {
    let app = App::new().await;
    let id = app.seed("m", 3).await;
    let url = json(app.get(&format!("/api/images/{id}")).await).await["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let res = app.get(&url).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let etag = header(&res, "etag").to_owned();
    let sha = url.trim_start_matches("/media/").trim_end_matches(".jpg");
    assert_eq!(
        etag,
        format!("\"{sha}\""),
        "the strong ETag is the content hash"
    );
    assert_eq!(
        origin::media::sha256_hex(&bytes(res).await),
        sha,
        "the URL names the bytes"
    );
    let again = app.get_if_none_match(&url, &etag).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);
    assert!(bytes(again).await.is_empty());
    // A hash that is not stored, a wrong extension, a path-like name: 404, not 304.
    for bad in [
        format!("/media/{}.jpg", "0".repeat(64)),
        url.replace(".jpg", ".png"),
        "/media/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        assert_eq!(
            app.get_if_none_match(&bad, &etag).await.status(),
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn pages_answer_if_none_match_with_304() {
    let app = App::new().await;
    app.seed("c", 1).await;
    for uri in ["/", "/gallery", "/images/1", "/api/images", "/api/images/1"] {
        let first = app.get(uri).await;
        let etag = header(&first, "etag").to_owned();
        assert!(etag.starts_with('"'), "{uri} has a strong ETag");
        let second = app.get_if_none_match(uri, &etag).await;
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(
            header(&second, "cache-control"),
            PAGE_CC,
            "{uri}: 304 keeps the policy"
        );
        assert_eq!(header(&second, "cdn-cache-control"), PAGE_CDN_CC, "{uri}");
        assert!(second.headers().contains_key("surrogate-key"), "{uri}");
        assert_eq!(
            app.get_if_none_match(uri, "\"stale\"").await.status(),
            StatusCode::OK
        );
    }
    // A like changes the page, so the old validator no longer matches.
    let etag = header(&app.get("/images/1").await, "etag").to_owned();
    app.post_form("/images/1/like", "").await;
    assert_eq!(
        app.get_if_none_match("/images/1", &etag).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_browser_flow_upload_filter_like() {
    let app = App::new().await;
    let upload_page = text(app.get("/upload").await).await;
    assert!(upload_page.contains(r#"enctype="multipart/form-data""#));
    assert!(upload_page.contains("up to 10 MiB"));

    let photo = fixtures::fixture("raccoon-small.jpg");
    let res = app
        .upload(
            "/upload",
            Some("<script>alert(1)</script>"),
            Some(("../../x.jpg", &photo)),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&res, "location"), "/images/1");
    let page = text(app.get("/images/1").await).await;
    assert!(!page.contains("<script>alert(1)"), "names are escaped");
    assert!(
        page.contains("&#60;script&#62;alert(1)") || page.contains("&lt;script&gt;alert(1)"),
        "{page}"
    );
    assert!(page.contains(r#"action="/images/1/like""#));
    for f in origin::filters::Filter::ALL {
        assert!(
            page.contains(&format!(r#"<option value="{}">"#, f.name())),
            "{f:?} in dropdown"
        );
    }

    let res = app.post_form("/images/1/filter", "filter=ocean").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&res, "location"), "/images/2");
    let child = text(app.get("/images/2").await).await;
    assert!(
        child.contains(r#"derived from <a href="/images/1">"#),
        "{child}"
    );
    assert!(
        text(app.get("/images/1").await)
            .await
            .contains(r#"href="/images/2""#),
        "parent lists child"
    );

    for _ in 0..2 {
        assert_eq!(
            app.post_form("/images/1/like", "").await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert!(
        text(app.get("/images/1").await)
            .await
            .contains(r#"<strong id="likes">2</strong> likes"#)
    );
    let front = text(app.get("/").await).await;
    assert!(front.contains(r#"id="slide-1""#) && front.contains(r#"id="slide-2""#));
}

#[tokio::test]
async fn front_page_shows_the_latest_five() {
    let app = App::new().await;
    for seed in 1..=7 {
        app.seed(&format!("n{seed}"), seed).await;
    }
    let front = app.get("/").await;
    assert_eq!(
        header(&front, "surrogate-key"),
        "front image-7 image-6 image-5 image-4 image-3"
    );
    let html = text(front).await;
    assert_eq!(html.matches(r#"class="slide""#).count(), 5);
    assert!(html.contains("/images/7") && !html.contains("/images/2\""));
}

#[tokio::test]
async fn api_errors_name_the_problem() {
    let app = App::new().await;
    let id = app.seed("e", 1).await;
    let cases = [
        (
            app.post_json(&format!("/api/images/{id}/filter"), r#"{"filter":"nope"}"#)
                .await,
            400,
            "unknown_filter",
        ),
        (
            app.post_json(&format!("/api/images/{id}/filter"), r#"{"filter":"#)
                .await,
            400,
            "bad_json",
        ),
        (
            app.post_json("/api/images/999/filter", r#"{"filter":"sepia"}"#)
                .await,
            404,
            "not_found",
        ),
        (
            app.post_json("/api/images/999/like", "").await,
            404,
            "not_found",
        ),
        (app.get("/api/images?limit=zero").await, 400, "bad_limit"),
        (app.get("/api/images?cursor=abc").await, 400, "bad_cursor"),
        (app.get("/api/nothing").await, 404, "not_found"),
        (
            app.upload(
                "/api/images",
                None,
                Some(("a.jpg", &fixtures::jpeg(8, 8, 1))),
            )
            .await,
            400,
            "missing_name",
        ),
        (
            app.upload("/api/images", Some("n"), None).await,
            400,
            "missing_file",
        ),
        (
            app.upload(
                "/api/images",
                Some(&"n".repeat(101)),
                Some(("a.jpg", &fixtures::jpeg(8, 8, 1))),
            )
            .await,
            400,
            "name_too_long",
        ),
        (
            app.post_json("/api/images", "{}").await,
            400,
            "not_multipart",
        ),
    ];
    for (res, status, code) in cases {
        assert_eq!(res.status().as_u16(), status, "{code}");
        assert_eq!(header(&res, "content-type"), "application/json");
        let body = json(res).await;
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(
        app.counts().await,
        (1, 1),
        "no failed request wrote anything"
    );
}

#[tokio::test]
async fn missing_images_are_cached_briefly_under_their_tag() {
    let app = App::new().await;
    for uri in ["/images/42", "/api/images/42"] {
        let res = app.get(uri).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(header(&res, "cache-control"), "public, max-age=0");
        assert_eq!(header(&res, "cdn-cache-control"), "max-age=10");
        assert_eq!(
            header(&res, "surrogate-key"),
            "image-42",
            "the upload of 42 purges it"
        );
    }
    assert_eq!(
        app.get("/images/not-a-number").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn json_api_paginates_with_capped_limits() {
    let app = App::new().await;
    for seed in 1..=5 {
        app.seed(&format!("p{seed}"), seed).await;
    }
    let page = json(app.get("/api/images?limit=2").await).await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64())
        .collect();
    assert_eq!(ids, [Some(5), Some(4)]);
    assert_eq!(page["has_next"], true);
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = json(
        app.get(&format!("/api/images?limit=1000&cursor={cursor}"))
            .await,
    )
    .await;
    assert_eq!(
        rest["items"].as_array().map(Vec::len),
        Some(3),
        "limit capped, not refused"
    );
    assert_eq!(rest["has_next"], false);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    let item = &rest["items"][0];
    for field in ["id", "name", "parent_id", "url", "likes", "created_at"] {
        assert!(item.get(field).is_some(), "{field} in {item}");
    }
}

/// Fills the single worker with a job that waits for the returned sender.
async fn occupy_the_only_worker(app: &App) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, wait) = mpsc::channel::<()>();
    let wait = Arc::new(Mutex::new(wait));
    let workers = app.state.workers.clone();
    let job = tokio::spawn(async move {
        let _ = workers
            .run(move || {
                let _ = wait.lock().map(|w| w.recv_timeout(Duration::from_secs(30)));
            })
            .await;
    });
    outpost_e2e::wait::eventually(Duration::from_secs(5), "the worker to be busy", || async {
        (app.state.workers.running() == 1).then_some(())
    })
    .await
    .expect("worker busy");
    (release, job)
}

#[tokio::test]
async fn a_full_worker_pool_answers_503_and_nothing_else_slows_down() {
    // One worker, no queue: one running job fills the pool.
    let app = App::with_workers(WorkerPool::new(1, 0).expect("pool")).await;
    let id = app.seed("busy", 1).await;
    let (release, job) = occupy_the_only_worker(&app).await;

    let res = app
        .post_json(&format!("/api/images/{id}/filter"), r#"{"filter":"sepia"}"#)
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "retry-after"), "2");
    assert_eq!(json(res).await["error"]["code"], "busy");
    let res = app
        .upload(
            "/api/images",
            Some("n"),
            Some(("a.jpg", &fixtures::jpeg(8, 8, 9))),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.counts().await, (1, 1), "rejected work wrote nothing");

    // Reads and likes do not use the pool: they answer while it is full.
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(
        app.post_json(&format!("/api/images/{id}/like"), "")
            .await
            .status(),
        StatusCode::OK
    );

    release.send(()).expect("release");
    job.await.expect("job");
    let res = app
        .post_json(&format!("/api/images/{id}/filter"), r#"{"filter":"sepia"}"#)
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "served again once the worker is free"
    );
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let app = App::new().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.state.store.close().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(res).await.contains("database unreachable"));
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "alive, just not ready"
    );
}
