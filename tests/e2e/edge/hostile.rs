//! What a hostile client could do, each item of issue 9 as an attacker would try it: one client
//! must never choose what another client gets from the cache, must not write to the region's
//! purge log at will, and framing tricks are refused before the origin sees them. Each test
//! asserts what a second, clean client gets and how many requests reached the origin (and, where
//! framing matters, the bytes the origin received). Slow clients: `slow_clients.rs`.

use std::time::Duration;

use super::{Response, SITE, Setup, get_site};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, http_client, raw, wait};
use reqwest::header::HeaderValue;

/// A raw request's answer: status and head.
async fn raw_status(edge: &EdgeProcess, request: &[u8]) -> anyhow::Result<(u16, String)> {
    let bytes = raw::exchange(edge.addr, request).await?;
    let head = raw::heads(&bytes).pop().unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head))
}

/// `GET path` as a client of [`SITE`] with `name: value`, the value's bytes exactly as given.
async fn get_with_bytes(
    edge: &EdgeProcess,
    path: &str,
    name: &'static str,
    value: &[u8],
) -> anyhow::Result<Response> {
    let req = http_client()
        .get(edge.url(path))
        .header("Host", SITE)
        .header(name, HeaderValue::from_bytes(value)?);
    Response::read(req.send().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_text_in_a_vary_field_is_its_own_variant_not_absence() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    for field in ["Cookie", "Accept-Language", "X-Session"] {
        let path = format!("/v/{field}");
        let lower = field.to_ascii_lowercase();
        s.origin.route_fn(&path, move |req| {
            let body = match req.header(&lower) {
                Some(v) => format!("for {v}"),
                None => "for everyone".to_owned(),
            };
            Reply::ok("public, max-age=600", body).header("Vary", field)
        });
        let name: &'static str = match field {
            "Cookie" => "cookie",
            "Accept-Language" => "accept-language",
            _ => "x-session",
        };
        let attacker = get_with_bytes(&s.edge, &path, name, b"evil\xff\xfe").await?;
        assert!(attacker.text().starts_with("for evil"), "{field}");
        let clean = get_site(&s.edge, &path, &[]).await?;
        assert_eq!(
            clean.text(),
            "for everyone",
            "{field}: a client without the field gets its own answer, not the attacker's"
        );
        assert!(!clean.is_hit(), "{field}: {}", clean.cache_status());
        let other = get_with_bytes(&s.edge, &path, name, b"evil\xff\xfd").await?;
        assert!(!other.is_hit(), "{field}: exact bytes select the variant");
        assert!(get_site(&s.edge, &path, &[]).await?.is_hit());
        assert_eq!(s.origin.count(&path), 3, "{field}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_not_host_and_port_is_refused_and_the_origin_gets_the_canonical_one()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/static/x", |req| {
        Reply::ok("max-age=600", "<html>static page</html>")
            .header("X-Seen-Host", req.header("host").unwrap_or(""))
    });
    s.origin
        .route("/x", Reply::ok("max-age=600", "{\"json\": true}"));
    for host in [
        "site.test/static",
        "site.test?x=1",
        "site.test#frag",
        "user@site.test",
        "site.test:http",
        "site..test",
        "[::1",
        "sit\u{e9}.test",
    ] {
        let request = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, head) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "Host: {host}");
        let cache_status = raw::fields(&head, "cache-status").join("");
        if host.contains('@') {
            // Pingora's own parser refuses userinfo before our phases run: its plain 400,
            // counted as a malformed request.
            assert_eq!(cache_status, "", "{head}");
        } else {
            assert_eq!(cache_status, "outpost; detail=bad-host", "{host}");
        }
    }
    wait::eventually(
        Duration::from_secs(5),
        "the malformed head counted",
        || async {
            let n = s
                .edge
                .metric("outpost_client_errors_total{kind=\"malformed\"}")
                .await
                .ok()?;
            (n == 1.0).then_some(())
        },
    )
    .await?;
    assert_eq!(
        s.edge
            .metric("outpost_client_errors_total{kind=\"bad_request\"}")
            .await?,
        7.0
    );
    assert_eq!(
        s.origin.requests().len(),
        0,
        "nothing refused reached the origin"
    );
    // The clean client asking for /static/x gets the page, and /x its own object: the refused
    // requests stored nothing under either key.
    let page = get_site(&s.edge, "/static/x", &[]).await?;
    assert_eq!(page.text(), "<html>static page</html>");
    assert!(!page.is_hit());
    let json = get_site(&s.edge, "/x", &[]).await?;
    assert_eq!(json.text(), "{\"json\": true}");
    assert!(!json.is_hit());
    // Key and origin agree on one canonical host.
    let shouted = s
        .get_with("/static/x", &[("host", "IMAGES.Example.:80")])
        .await?;
    assert!(shouted.is_hit(), "{}", shouted.cache_status());
    assert_eq!(
        s.origin.requests()[0].header("host"),
        Some(SITE),
        "the origin got the canonical host"
    );
    assert_eq!(s.origin.count("/static/x"), 1);
    assert_eq!(s.origin.count("/x"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_request_targets_are_refused_not_keyed_as_the_root() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route("/", Reply::ok("max-age=600", "the front page"));
    s.origin.route("/abs", Reply::ok("max-age=600", "absolute"));
    s.origin
        .route("*", Reply::new(204).header("Allow", "GET, HEAD"));
    for target in [
        "./x", "..", "c", "host:80", "mailto:x", "ftp://x/", "http:/x",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let (status, head) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "GET {target}: {head}");
    }
    let (status, _) = raw_status(
        &s.edge,
        format!("GET * HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    assert_eq!(status, 400, "asterisk-form is for OPTIONS only");
    let before = s.origin.requests().len();
    let front = get_site(&s.edge, "/", &[]).await?;
    assert_eq!(front.text(), "the front page");
    assert!(!front.is_hit(), "nothing was stored under the root's key");
    assert_eq!(s.origin.count("/"), 1);
    // Absolute-form for our scheme is accepted and forwarded in origin-form.
    let (status, _) = raw_status(
        &s.edge,
        format!("GET http://{SITE}/abs HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    assert_eq!(status, 200);
    assert!(
        get_site(&s.edge, "/abs", &[]).await?.is_hit(),
        "same key as origin-form"
    );
    let (status, _) = raw_status(
        &s.edge,
        format!("OPTIONS * HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    assert_eq!(status, 204);
    let targets: Vec<String> = s.origin.requests()[before..]
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/", "/abs", "*"], "what the origin was asked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_the_edges_own() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // An origin that builds redirects from X-Forwarded-* (as many frameworks do).
    s.origin.route_fn("/login", |req| {
        let proto = req.header("x-forwarded-proto").unwrap_or("?");
        let host = req.header("x-forwarded-host").unwrap_or("?");
        Reply::new(301)
            .header("Cache-Control", "max-age=600")
            .header("Location", &format!("{proto}://{host}/welcome"))
    });
    let attacker = s
        .get_with(
            "/login",
            &[
                ("host", SITE),
                ("x-forwarded-host", "evil.test"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6;host=evil.test;proto=https"),
                ("x-original-url", "/admin"),
                ("x-http-method-override", "DELETE"),
            ],
        )
        .await?;
    assert_eq!(attacker.header("location"), "http://images.example/welcome");
    let sent = s.origin.requests().pop().expect("one request");
    assert_eq!(sent.header("x-forwarded-host"), Some(SITE));
    assert_eq!(sent.header("x-forwarded-proto"), Some("http"));
    assert_eq!(sent.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        sent.header("forwarded"),
        Some("for=127.0.0.1;host=images.example;proto=http")
    );
    assert_eq!(sent.header("x-original-url"), None);
    assert_eq!(sent.header("x-http-method-override"), None);
    let clean = get_site(&s.edge, "/login", &[]).await?;
    assert!(clean.is_hit());
    assert_eq!(clean.header("location"), "http://images.example/welcome");
    assert_eq!(s.origin.count("/login"), 1);

    // Behind a trusted proxy, its forwarding headers are kept and ours appended.
    let trusted = Setup::with_config("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n").await?;
    trusted.origin.route("/r", Reply::ok("no-store", "r"));
    trusted
        .get_with(
            "/r",
            &[
                ("host", SITE),
                ("x-forwarded-for", "198.51.100.9"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await?;
    let sent = trusted.origin.requests().pop().expect("one request");
    assert_eq!(
        sent.header("x-forwarded-for"),
        Some("198.51.100.9, 127.0.0.1")
    );
    assert_eq!(sent.header("x-forwarded-proto"), Some("https"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_query_parameters_never_reach_the_origin() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // An origin that reflects its query into the page.
    s.origin.route_fn("/p", |req| {
        Reply::ok("max-age=600", format!("page for {}", req.target))
    });
    let attacker = get_site(
        &s.edge,
        "/p?id=1&utm_content=%3Cscript%3Eevil()%3C/script%3E",
        &[],
    )
    .await?;
    assert_eq!(attacker.text(), "page for /p?id=1");
    let hidden = get_site(&s.edge, "/p?utm_x=1;id=5&id=2", &[]).await?;
    assert_eq!(
        hidden.text(),
        "page for /p?id=2",
        "`;` does not split parameters: `utm_x=1;id=5` is dropped whole"
    );
    let clean = get_site(&s.edge, "/p?id=1", &[]).await?;
    assert!(clean.is_hit());
    assert_eq!(clean.text(), "page for /p?id=1");
    let targets: Vec<String> = s
        .origin
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/p?id=1", "/p?id=2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_for_a_cookie_is_not_stored_without_explicit_freshness() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let modified =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(30 * 24 * 3600));
    // Web cache deception: /account/<anything>.css answered with the account page.
    s.origin.route_fn("/account/x.css", move |req| {
        let who = req.header("cookie").unwrap_or("nobody").to_owned();
        Reply::new(200)
            .header("Last-Modified", &modified)
            .body(format!("account page of {who}"))
    });
    let victim = s
        .get_with(
            "/account/x.css",
            &[("host", SITE), ("cookie", "session=alice")],
        )
        .await?;
    assert_eq!(victim.text(), "account page of session=alice");
    assert!(
        victim.cache_status().contains("detail=credentials"),
        "{}",
        victim.cache_status()
    );
    let attacker = get_site(&s.edge, "/account/x.css", &[]).await?;
    assert_eq!(attacker.text(), "account page of nobody");
    assert_eq!(s.origin.count("/account/x.css"), 2);
    // What the origin says may be shared is, cookie or not.
    s.origin
        .route_fn("/logo.png", |_| Reply::ok("public, max-age=600", "logo"));
    s.get_with("/logo.png", &[("host", SITE), ("cookie", "session=alice")])
        .await?;
    assert!(get_site(&s.edge, "/logo.png", &[]).await?.is_hit());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_order_in_a_vary_field_is_not_normalised_away() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/greeting", |req| {
        let first = req
            .header("accept-language")
            .and_then(|l| l.split(',').next())
            .unwrap_or("en")
            .trim()
            .to_owned();
        Reply::ok("max-age=600", format!("hello in {first}")).header("Vary", "Accept-Language")
    });
    let fr = s
        .get_with(
            "/greeting",
            &[("host", SITE), ("accept-language", "fr, en")],
        )
        .await?;
    let en = s
        .get_with(
            "/greeting",
            &[("host", SITE), ("accept-language", "en, fr")],
        )
        .await?;
    assert_eq!(
        (fr.text().as_str(), en.text().as_str()),
        ("hello in fr", "hello in en")
    );
    let fr_again = s
        .get_with("/greeting", &[("host", SITE), ("accept-language", "FR,en")])
        .await?;
    assert!(fr_again.is_hit(), "case and spaces are normalised");
    assert_eq!(fr_again.text(), "hello in fr");
    assert_eq!(s.origin.count("/greeting"), 2);
    Ok(())
}

/// A region of two nodes on one memcached; short object lives so invalidation marks end soon.
fn region(m: &Memcached, extra: &str) -> String {
    format!(
        "[l2]\nservers = [\"{}\"]\ndeadline_ms = 200\nchunk_deadline_ms = 500\n\
         [cache]\ngrace_secs = 1\nstale_if_error_secs = 0\n{extra}",
        m.addr
    )
}

/// Entries in the region's purge log, as memcached holds them.
fn log_entries(m: &Memcached) -> anyhow::Result<usize> {
    Ok(m.keys()?.iter().filter(|k| k.contains(":purge:e:")).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_requests_cannot_flood_the_purge_log() -> anyhow::Result<()> {
    let m = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let extra = "[purge]\ninvalidations_per_client_per_sec = 1\ninvalidation_burst = 2\n";
    let a = EdgeProcess::start(&[origin.addr], &region(&m, extra))?;
    let b = EdgeProcess::start(&[origin.addr], &region(&m, extra))?;
    let client = http_client();
    // 200 POSTs with 30 KB paths nobody caches: nothing for the region to hear about.
    for i in 0..200 {
        let path = format!("/junk/{i}/{}", "a".repeat(30_000));
        origin.route(&path, Reply::new(201));
        client
            .post(a.url(&path))
            .header("Host", SITE)
            .send()
            .await?;
    }
    wait::eventually(
        Duration::from_secs(10),
        "200 invalidations judged",
        || async {
            let n = a
                .metric("outpost_invalidations_shared_total{result=\"not_held\"}")
                .await
                .ok()?;
            (n >= 200.0).then_some(())
        },
    )
    .await?;
    assert_eq!(log_entries(&m)?, 0, "no log entry for URLs no tier held");
    assert_eq!(
        a.metric("outpost_invalidations_shared_total{result=\"logged\"}")
            .await?,
        0.0
    );

    // Held URLs are invalidated region-wide, at most the client's rate.
    let filled = std::time::Instant::now();
    for i in 0..5 {
        let path = format!("/held/{i}");
        origin.route_fn(&path, |req| match req.method.as_str() {
            "GET" => Reply::ok("max-age=5", "held"),
            _ => Reply::new(204),
        });
        get_site(&a, &path, &[]).await?;
        get_site(&b, &path, &[]).await?;
        assert!(get_site(&b, &path, &[]).await?.is_hit(), "b holds {path}");
    }
    let posting = std::time::Instant::now();
    for i in 0..5 {
        client
            .post(a.url(&format!("/held/{i}")))
            .header("Host", SITE)
            .send()
            .await?;
    }
    // A burst of 2, then 1 per second: what the client's rate allowed while it posted.
    let allowed = 2.0 + posting.elapsed().as_secs_f64().floor();
    let logged = wait::eventually(
        Duration::from_secs(10),
        "5 invalidations judged",
        || async {
            let logged = a
                .metric("outpost_invalidations_shared_total{result=\"logged\"}")
                .await
                .ok()?;
            let limited = a
                .metric("outpost_invalidations_shared_total{result=\"rate_limited\"}")
                .await
                .ok()?;
            (logged + limited >= 5.0).then_some((logged, limited))
        },
    )
    .await
    .map(|(logged, limited)| {
        assert!(
            (2.0..=allowed).contains(&logged) && logged + limited == 5.0,
            "{logged} logged, {limited} limited, {allowed} allowed"
        );
        logged
    })?;
    // Node b hears of the logged ones within a few polls, and still serves the rate-limited
    // ones (only node a dropped them) while their 5 s life lasts. `only-if-cached` asks b what
    // it holds without refilling what it no longer serves.
    let expected = 5.0 - logged;
    let still_held = wait::eventually(
        Duration::from_secs(3),
        "b applied every logged invalidation",
        || async {
            let mut held = 0.0;
            for i in 0..5 {
                let path = format!("/held/{i}");
                let answer = get_site(&b, &path, &[("Cache-Control", "only-if-cached")])
                    .await
                    .ok()?;
                held += f64::from(u8::from(answer.status == 200));
            }
            (held <= expected).then_some(held)
        },
    )
    .await?;
    // On a machine slow enough for 5 s to pass since the fills, the rate-limited copies may
    // have expired too.
    if filled.elapsed() < Duration::from_secs(4) {
        assert_eq!(still_held, expected, "b serves what was only dropped on a");
    }
    let entries = log_entries(&m)?;
    assert!(
        entries >= 1 && entries as f64 <= logged,
        "{entries} log entries, {logged} logged"
    );
    // Marks last only as long as the objects they could affect (5 s + 1 s grace here).
    wait::eventually(Duration::from_secs(5), "b's marks", || async {
        let marks = b.metric("outpost_purge_marks").await.ok()?;
        (marks >= 1.0).then_some(())
    })
    .await?;
    wait::eventually(Duration::from_secs(15), "b's marks to expire", || async {
        let marks = b.metric("outpost_purge_marks").await.ok()?;
        (marks == 0.0).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    for path in ["/1", "/2", "/3"] {
        s.origin
            .route(path, Reply::ok("max-age=600", format!("body {path}")));
    }
    let pipelined = format!(
        "GET /1 HTTP/1.1\r\nHost: {SITE}\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: {SITE}\r\n\r\n\
         GET /3 HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n"
    );
    let bytes = raw::exchange(s.edge.addr, pipelined.as_bytes()).await?;
    let text = String::from_utf8_lossy(&bytes);
    let statuses = text.matches("HTTP/1.1 200").count();
    assert_eq!(statuses, 3, "{text}");
    let (one, three) = (
        text.find("body /1").unwrap_or(usize::MAX),
        text.find("body /3").unwrap_or(usize::MAX),
    );
    assert!(one < three && three < usize::MAX, "in order: {text}");
    assert!(!text.contains("body /2"), "HEAD has no body");
    assert_eq!(s.origin.requests().len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_tricks_are_refused_and_labelled_as_client_errors() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/upload", |req| {
        Reply::new(200).body(format!("got {} bytes", req.body.len()))
    });
    // A bare LF inside a chunk extension: httparse would read on; RFC 9112 says no.
    for body in [
        "5;ext\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0;a\nGET /smuggled HTTP/1.1\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "zz\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{body}"
        );
        let (status, head) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "{body:?}: {head}");
        let cache_status = raw::fields(&head, "cache-status").join("");
        assert!(
            cache_status.contains("detail=bad-request"),
            "a client error, not an origin one: {cache_status}"
        );
    }
    assert_eq!(
        s.origin.requests().len(),
        0,
        "no request with broken framing reached the origin whole"
    );
    assert!(
        s.edge
            .metric("outpost_requests_total{cache=\"client_error\"}")
            .await?
            >= 4.0
    );
    assert!(
        s.edge
            .metric("outpost_client_errors_total{kind=\"framing\"}")
            .await?
            >= 3.0
    );
    assert_eq!(
        s.edge
            .metric("outpost_requests_total{cache=\"error\"}")
            .await?,
        0.0
    );

    // A length said twice reaches the origin said once.
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 5, 5\r\n\
         Connection: close\r\n\r\nhello"
    );
    let (status, _) = raw_status(&s.edge, request.as_bytes()).await?;
    assert_eq!(status, 200);
    let sent = s.origin.requests().pop().expect("the upload");
    let lengths: Vec<&str> = sent
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(lengths, ["5"]);
    assert_eq!(sent.body, b"hello");

    // HTTP/1.1 without Host.
    let (status, head) = raw_status(
        &s.edge,
        b"GET /upload HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert_eq!(status, 400);
    assert!(head.contains("detail=missing-host"), "{head}");
    assert_eq!(s.origin.requests().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_body_is_forwarded_but_never_stored_or_refused() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/search", |req| {
        Reply::ok(
            "max-age=600",
            format!("results for {:?}", String::from_utf8_lossy(&req.body)),
        )
    });
    let request = format!(
        "GET /search HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil"
    );
    let bytes = raw::exchange(s.edge.addr, request.as_bytes()).await?;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("results for \"evil\""), "{text}");
    assert!(text.contains("detail=request-body"), "{text}");
    let clean = get_site(&s.edge, "/search", &[]).await?;
    assert_eq!(clean.text(), "results for \"\"");
    assert!(!clean.is_hit(), "the body's answer was not stored");
    assert!(get_site(&s.edge, "/search", &[]).await?.is_hit());
    assert_eq!(s.origin.count("/search"), 2);

    let strict = Setup::with_config("[server]\nget_with_body = \"reject\"\n").await?;
    let (status, head) = raw_status(&strict.edge, request.as_bytes()).await?;
    assert_eq!(status, 400, "{head}");
    assert_eq!(strict.origin.requests().len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_listed_in_connection_is_gone_for_the_cache_and_the_origin_alike()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/greeting", |req| {
        let lang = req.header("accept-language").unwrap_or("none").to_owned();
        Reply::ok("max-age=600", format!("lang={lang}")).header("Vary", "Accept-Language")
    });
    // Pingora drops fields listed in `Connection` on the way out; the cache must not key the
    // answer on them, or this stores the answer to "no language" as the `fr` variant.
    let attack = format!(
        "GET /greeting HTTP/1.1\r\nHost: {SITE}\r\nAccept-Language: fr\r\n\
         Cache-Control: no-cache\r\nConnection: close, Accept-Language\r\n\r\n"
    );
    let bytes = raw::exchange(s.edge.addr, attack.as_bytes()).await?;
    assert!(String::from_utf8_lossy(&bytes).contains("lang=none"));
    let fr = s
        .get_with("/greeting", &[("host", SITE), ("accept-language", "fr")])
        .await?;
    assert_eq!(
        fr.text(),
        "lang=fr",
        "the fr variant is the origin's fr answer"
    );
    let none = get_site(&s.edge, "/greeting", &[]).await?;
    assert!(
        none.is_hit(),
        "what the attacker got is the no-language variant"
    );
    assert_eq!(none.text(), "lang=none");
    assert_eq!(s.origin.count("/greeting"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_and_scheme_hints_never_reach_the_origin()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/home", |req| {
        let host = req.header("x_forwarded_host").unwrap_or("-").to_owned();
        Reply::ok("max-age=600", format!("links to {host}"))
    });
    let r = raw::exchange(
        s.edge.addr,
        format!(
            "GET /home HTTP/1.1\r\nHost: {SITE}\r\nX_Forwarded_Host: evil.test\r\n\
             X_Original_URL: /admin\r\nX-Forwarded-Ssl: on\r\nFront-End-Https: on\r\n\
             CF-Connecting-IP: 6.6.6.6\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    assert!(String::from_utf8_lossy(&r).contains("links to -"));
    let sent = s.origin.requests().pop().expect("one request");
    let names: Vec<String> = sent
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    for gone in [
        "x_forwarded_host",
        "x_original_url",
        "x-forwarded-ssl",
        "front-end-https",
    ] {
        assert!(
            !names.contains(&gone.to_owned()),
            "{gone} reached the origin: {names:?}"
        );
    }
    assert!(!names.contains(&"cf-connecting-ip".to_owned()));
    Ok(())
}

/// Sends `request` on `c` and reads one response (with a Content-Length body).
async fn one_exchange(c: &mut tokio::net::TcpStream, request: &[u8]) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.write_all(request).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = raw::fields(&text[..end], "content-length")
                .first()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(text);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await??;
        if n == 0 {
            return Ok(text);
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_answered_200_keeps_the_connection_watched() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/x", Reply::ok("no-store", "plain"));
    s.origin.route("/upload", Reply::new(200).body("taken"));
    let mut c = tokio::net::TcpStream::connect(s.edge.addr).await?;
    let first = one_exchange(
        &mut c,
        format!("GET /x HTTP/1.1\r\nHost: {SITE}\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let second = one_exchange(
        &mut c,
        format!(
            "POST /upload HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;a\nb\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    assert!(second.starts_with("HTTP/1.1 400"), "{second}");
    assert_eq!(
        s.origin.count("/upload"),
        0,
        "the smuggling body never reached the origin"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_vary_is_not_stored_and_parameter_values_keep_their_case()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/page", |req| {
        let lang = req.header("accept-language").unwrap_or("none").to_owned();
        Reply::ok("max-age=600", format!("lang={lang}")).header("Vary", "Accept-Language, X-\u{e9}")
    });
    let fr = s
        .get_with("/page", &[("host", SITE), ("accept-language", "fr")])
        .await?;
    assert!(
        fr.cache_status().contains("detail=vary-star"),
        "{}",
        fr.cache_status()
    );
    let en = s
        .get_with("/page", &[("host", SITE), ("accept-language", "en")])
        .await?;
    assert_eq!(en.text(), "lang=en");
    assert_eq!(s.origin.count("/page"), 2);

    s.origin.route_fn("/api", |req| {
        let accept = req.header("accept").unwrap_or("-").to_owned();
        Reply::ok("max-age=600", format!("for {accept}")).header("Vary", "Accept")
    });
    for version in ["application/json;v=ABC", "application/json;v=abc"] {
        let r = s
            .get_with("/api", &[("host", SITE), ("accept", version)])
            .await?;
        assert_eq!(r.text(), format!("for {version}"));
    }
    assert_eq!(s.origin.count("/api"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_whitespace_or_a_fragment_in_the_target_is_refused() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/a", Reply::ok("max-age=600", "a"));
    for line in [
        "GET /a b HTTP/1.1",
        "GET /a#frag HTTP/1.1",
        "GET\t/a HTTP/1.1",
    ] {
        let request = format!("{line}\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let (status, _) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "{line}");
    }
    assert_eq!(s.origin.requests().len(), 0);
    // The proxy listener's own answers say who answered too.
    let (status, head) = raw_status(
        &s.edge,
        format!("PURGE /a HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(raw::fields(&head, "via"), ["1.1 outpost"]);
    assert_eq!(
        raw::fields(&head, "cache-status"),
        ["outpost; detail=purge"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_naming_what_frames_or_routes_the_request_is_refused() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/carrier", Reply::new(200).body("carrier"));
    s.origin
        .route("/smuggled", Reply::ok("max-age=600", "smuggled"));
    // CL.0: with Content-Length dropped as hop-by-hop, the body would be read as a request.
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {SITE}\r\nX-Tag: attacker\r\n\r\n");
    let carrier = format!(
        "POST /carrier HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: {}\r\n\
         Connection: Content-Length\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let bytes = raw::exchange(s.edge.addr, carrier.as_bytes()).await?;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "one answer for one request: {text}"
    );
    for listed in [
        "Transfer-Encoding",
        "Host",
        "Forwarded",
        "close, X-Forwarded-For",
    ] {
        let request =
            format!("GET /carrier HTTP/1.1\r\nHost: {SITE}\r\nConnection: {listed}\r\n\r\n");
        let (status, _) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "Connection: {listed}");
    }
    assert_eq!(s.origin.requests().len(), 0, "nothing reached the origin");
    // Control bytes in the request line are refused too, not percent-encoded.
    for line in [
        "GET /a\u{b}b HTTP/1.1",
        "GET /a\u{0}b HTTP/1.1",
        "GET /a\u{7f} HTTP/1.1",
    ] {
        let request = format!("{line}\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let (status, _) = raw_status(&s.edge, request.as_bytes()).await?;
        assert_eq!(status, 400, "{line:?}");
    }
    assert_eq!(s.origin.requests().len(), 0);
    Ok(())
}
