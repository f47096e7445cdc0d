//! Vary (RFC 9111 §4.1): variants keyed by the exact bytes of the listed request fields after
//! the normalisation RFC 9110 makes safe (case and whitespace of list members), with a cap on
//! variants per URL. (Hostile values: `hostile.rs`.)

use super::Setup;
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_follow_normalised_request_fields() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/v", |req| {
        let ae = req.header("accept-encoding").unwrap_or("none").to_owned();
        Reply::ok("max-age=60", format!("for {ae}")).header("Vary", "Accept-Encoding")
    });
    let get = |ae: Option<&'static str>| {
        let s = &s;
        async move {
            match ae {
                Some(ae) => s.get_with("/v", &[("accept-encoding", ae)]).await,
                None => s.get("/v").await,
            }
        }
    };
    let first = get(Some("gzip, br")).await?;
    assert_eq!(first.text(), "for gzip, br");
    for same in ["gzip,br", "GZIP ,  BR"] {
        let r = get(Some(same)).await?;
        assert!(r.is_hit(), "{same}: {}", r.cache_status());
        assert_eq!(r.text(), "for gzip, br");
    }
    // Order and q=0 members can change the answer: their own variant.
    let reordered = get(Some("br, gzip")).await?;
    assert_eq!(reordered.text(), "for br, gzip");
    let other = get(Some("gzip")).await?;
    assert_eq!(other.text(), "for gzip");
    assert!(
        other.cache_status().starts_with("outpost; fwd=vary-miss"),
        "{}",
        other.cache_status()
    );
    let none = get(None).await?;
    assert_eq!(none.text(), "for none");
    assert!(get(Some("gzip")).await?.is_hit());
    assert!(get(None).await?.is_hit());
    assert!(get(Some("br,gzip")).await?.is_hit());
    assert_eq!(s.origin.count("/v"), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_per_url_are_capped() -> anyhow::Result<()> {
    let s = Setup::with_config("[cache]\nmax_variants = 2\n").await?;
    s.origin.route_fn("/mode", |req| {
        Reply::ok("max-age=60", req.header("x-mode").unwrap_or("").to_owned())
            .header("Vary", "X-Mode")
    });
    for mode in ["a", "b", "c", "a", "b", "c"] {
        s.get_with("/mode", &[("x-mode", mode)]).await?;
    }
    let third = s.get_with("/mode", &[("x-mode", "c")]).await?;
    assert_eq!(third.text(), "c");
    assert!(
        third.cache_status().contains("detail=too-many-variants"),
        "{}",
        third.cache_status()
    );
    let modes: Vec<String> = s
        .origin
        .requests()
        .iter()
        .filter_map(|r| r.header("x-mode").map(str::to_owned))
        .collect();
    assert_eq!(
        modes,
        ["a", "b", "c", "c", "c"],
        "a and b were stored, c never was"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_around_commas_selects_the_same_variant_of_any_field() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/listy",
        Reply::ok("max-age=60", "listy").header("Vary", "X-Features"),
    );
    s.get_with("/listy", &[("x-features", "dark, compact")])
        .await?;
    for same in ["dark,compact", "dark ,  compact"] {
        let r = s.get_with("/listy", &[("x-features", same)]).await?;
        assert!(r.is_hit(), "{same}: {}", r.cache_status());
    }
    let other = s
        .get_with("/listy", &[("x-features", "compact, dark")])
        .await?;
    assert!(!other.is_hit(), "order is meaning");
    assert_eq!(s.origin.count("/listy"), 2);
    Ok(())
}
