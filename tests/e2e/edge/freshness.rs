//! Freshness (RFC 9111 §4.2, RFC 9213): precedence of the fields, age correction, `Age` on hits.
//! Staleness is produced with `Age` and `Date` fields, not by waiting.

use std::time::{Duration, SystemTime};

use super::{Setup, http_date_forms};
use outpost_e2e::Reply;

fn ttl(cache_status: &str) -> i64 {
    cache_status
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(i64::MIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_fields_take_precedence_and_are_stripped() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/cdn",
        Reply::ok("no-store", "x").header("CDN-Cache-Control", "max-age=60"),
    );
    s.origin.route(
        "/surrogate",
        Reply::ok("private", "x").header("Surrogate-Control", "max-age=60"),
    );
    s.origin.route(
        "/other-target",
        Reply::ok("max-age=60", "x").header("Surrogate-Control", "no-store;someone-else"),
    );
    for path in ["/cdn", "/surrogate", "/other-target"] {
        let first = s.get(path).await?;
        let hit = s.get(path).await?;
        assert!(hit.is_hit(), "{path}: {}", hit.cache_status());
        for r in [&first, &hit] {
            assert!(
                !r.headers.contains_key("cdn-cache-control")
                    && !r.headers.contains_key("surrogate-control"),
                "{path}"
            );
        }
        assert_eq!(s.origin.count(path), 1, "{path}");
    }
    // Cache-Control itself still reaches the client, for its own cache.
    assert_eq!(s.get("/cdn").await?.header("cache-control"), "no-store");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_maxage_then_max_age_then_expires() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    s.origin
        .route("/s-maxage", Reply::ok("max-age=0, s-maxage=120", "x"));
    s.origin.route(
        "/expires",
        Reply::new(200).header("Expires", &in_an_hour).body("x"),
    );
    s.origin.route(
        "/bad-expires",
        Reply::new(200).header("Expires", "0").body("x"),
    );
    for path in ["/s-maxage", "/expires", "/bad-expires"] {
        s.get(path).await?;
    }
    let t = ttl(s.get("/s-maxage").await?.cache_status());
    assert!((118..=120).contains(&t), "s-maxage wins: {t}");
    let t = ttl(s.get("/expires").await?.cache_status());
    assert!((3590..=3600).contains(&t), "Expires − Date: {t}");
    let again = s.get("/bad-expires").await?;
    assert!(
        !again.is_hit(),
        "an invalid Expires is already stale: {}",
        again.cache_status()
    );
    assert_eq!(s.origin.count("/bad-expires"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_is_corrected_for_age_and_date_and_sent_on_hits() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route("/aged", Reply::ok("max-age=100", "x").header("Age", "30"));
    let forty_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(40));
    s.origin.route(
        "/dated",
        Reply::ok("max-age=100", "x").header("Date", &forty_ago),
    );
    s.origin.route(
        "/already-stale",
        Reply::ok("max-age=60", "x").header("Age", "120"),
    );
    for path in ["/aged", "/dated", "/already-stale"] {
        s.get(path).await?;
    }
    let hit = s.get("/aged").await?;
    let age: i64 = hit.header("age").parse()?;
    assert!((30..=32).contains(&age), "Age {age}");
    assert!(
        (68..=70).contains(&ttl(hit.cache_status())),
        "{}",
        hit.cache_status()
    );
    let hit = s.get("/dated").await?;
    let age: i64 = hit.header("age").parse()?;
    assert!(
        (40..=42).contains(&age),
        "a Date 40 s old means 40 s of age: {age}"
    );
    let again = s.get("/already-stale").await?;
    assert!(!again.is_hit(), "older than its lifetime on arrival");
    assert_eq!(s.origin.count("/already-stale"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_is_the_origins_on_misses_and_hits_and_ours_only_when_it_sent_none()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    let minute_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    s.origin.route(
        "/dated",
        Reply::ok("max-age=3600", "x").header("Date", &minute_ago),
    );
    // Another HTTP-date form, in another case: sent on as the same instant, as an IMF-fixdate.
    let [_, rfc850, _] = http_date_forms(httpdate::parse_http_date(&minute_ago)?);
    let rfc850 = rfc850.to_lowercase();
    s.origin.route(
        "/rfc850",
        Reply::ok("max-age=3600", "x").header("Date", &rfc850),
    );
    s.origin
        .route("/undated", Reply::ok("max-age=3600", "x").no_date());
    for path in ["/dated", "/rfc850"] {
        let miss = s.get(path).await?;
        assert_eq!(miss.header("date"), minute_ago, "{path} miss");
        let hit = s.get(path).await?;
        assert!(hit.is_hit());
        assert_eq!(
            hit.header("date"),
            minute_ago,
            "{path}: a hit keeps the stored Date"
        );
        let age: u64 = hit.header("age").parse()?;
        assert!((60..=62).contains(&age), "{path}: Age says how old: {age}");
    }
    // No Date from the origin: the edge adds one (now), on the miss and on the hit.
    for res in [s.get("/undated").await?, s.get("/undated").await?] {
        let date = httpdate::parse_http_date(res.header("date"))?;
        let off = SystemTime::now().duration_since(date).unwrap_or_default();
        assert!(off < Duration::from_secs(5), "{}", res.header("date"));
    }
    assert_eq!(s.origin.count("/dated") + s.origin.count("/rfc850"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_list_counts_its_first_value_and_expires_is_read_in_every_form() -> anyhow::Result<()>
{
    let s = Setup::new().await?;
    // RFC 9111 §5.1: the first of several values. 7200 s old with a 1 h lifetime: stale.
    s.origin.route(
        "/age-list",
        Reply::ok("max-age=3600", "x").header("Age", "7200, 0"),
    );
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let in_an_hour = httpdate::fmt_http_date(now + Duration::from_secs(3600));
    // The same instant in the obsolete forms, and in the wrong case (RFC 9110 §5.6.7).
    let [_, rfc850, asctime] = http_date_forms(httpdate::parse_http_date(&in_an_hour)?);
    let forms = [
        ("/expires-imf", in_an_hour.clone()),
        ("/expires-lower", in_an_hour.to_lowercase()),
        ("/expires-rfc850", rfc850.to_uppercase()),
        ("/expires-asctime", asctime),
    ];
    for (path, expires) in &forms {
        s.origin.route(
            path,
            Reply::new(200)
                .body("x")
                .header("Date", &date)
                .header("Expires", expires),
        );
    }
    s.get("/age-list").await?;
    let again = s.get("/age-list").await?;
    assert!(
        !again.is_hit(),
        "stale on arrival: {}",
        again.cache_status()
    );
    assert_eq!(s.origin.count("/age-list"), 2);
    for (path, expires) in &forms {
        s.get(path).await?;
        let hit = s.get(path).await?;
        assert!(hit.is_hit(), "{path} ({expires}): {}", hit.cache_status());
        let t = ttl(hit.cache_status());
        assert!((3590..=3600).contains(&t), "{path} ({expires}): ttl {t}");
    }
    Ok(())
}
