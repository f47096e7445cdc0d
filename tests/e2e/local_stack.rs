//! The local stack `scripts/run` starts, from its own config files (`config/local/`), moved to
//! free ports: memcached, the origin and the edge. What the README promises must hold: an
//! upload shows on the very next front page through the edge (the origin purged it with the
//! local token), and the README's purge command is accepted.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;

use crate::origin_flows::upload_form;
use outpost_e2e::process::free_port;
use outpost_e2e::{EdgeProcess, Memcached, OriginProcess, fixtures, http_client, wait};

fn local(name: &str) -> anyhow::Result<toml::Table> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/local")
        .join(name);
    Ok(std::fs::read_to_string(&path)?.parse()?)
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> anyhow::Result<&'a mut toml::Table> {
    t.get_mut(key)
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| anyhow::anyhow!("config/local has no [{key}]"))
}

fn str_of(t: &toml::Table, key: &str) -> anyhow::Result<String> {
    t.get(key)
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("config/local has no {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_shows_an_upload_on_the_next_front_page() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let db_dir = tempfile::tempdir()?;
    let origin_port = free_port()?;

    let mut edge_config = local("edge.toml")?;
    let token = str_of(table(&mut edge_config, "admin")?, "token")?;
    anyhow::ensure!(!token.is_empty(), "the local edge has an admin token");
    let l2 = table(&mut edge_config, "l2")?;
    anyhow::ensure!(l2.contains_key("servers"), "the local edge uses memcached");
    l2.insert(
        "servers".into(),
        toml::Value::Array(vec![memcached.addr.to_string().into()]),
    );
    // EdgeProcess picks the listeners' ports and the origin address.
    table(&mut edge_config, "server")?.remove("listen");
    table(&mut edge_config, "admin")?.remove("listen");
    edge_config.remove("origin");
    let edge = EdgeProcess::start(
        &[format!("127.0.0.1:{origin_port}").parse()?],
        &toml::to_string(&edge_config)?,
    )?;

    let mut origin_config = local("origin.toml")?;
    origin_config.insert("listen".into(), format!("127.0.0.1:{origin_port}").into());
    let db = db_dir.path().join("origin.db");
    table(&mut origin_config, "database")?
        .insert("url".into(), format!("sqlite://{}", db.display()).into());
    let purge = table(&mut origin_config, "purge")?;
    assert_eq!(
        str_of(purge, "token")?,
        token,
        "the local origin purges with the local edge's token"
    );
    purge.insert("edge_admin_url".into(), edge.admin_url("").into());
    let origin = OriginProcess::start(&toml::to_string(&origin_config)?)?;

    let client = http_client();
    let front = || async {
        let res = client.get(edge.url("/")).send().await?;
        let status = res.headers().get("cache-status").cloned();
        anyhow::Ok((res.text().await?, status))
    };
    wait::eventually(
        Duration::from_secs(10),
        "the front page through the edge",
        || async { front().await.ok().map(|_| ()) },
    )
    .await?;
    front().await?;
    let (before, status) = front().await?;
    assert!(
        status.is_some_and(|s| s.to_str().unwrap_or("").contains("hit")),
        "the front page is cached"
    );
    assert!(!before.contains("first-upload"));

    let res = client
        .post(edge.url("/api/images"))
        .multipart(upload_form(
            "first-upload",
            "photo.jpg",
            fixtures::jpeg(40, 30, 7),
        ))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", origin.logs());
    let (after, _) = front().await?;
    assert!(
        after.contains("first-upload"),
        "the upload shows on the next front page; origin log:\n{}",
        origin.logs()
    );

    // The README's purge command, with the local token.
    let res = client
        .post(edge.admin_url("/purge"))
        .bearer_auth(&token)
        .body(r#"{"tags": ["front"], "wait": true}"#)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await?);
    Ok(())
}
