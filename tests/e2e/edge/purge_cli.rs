//! `edge purge …` against a real edge: it purges through the admin API, prints the receipt, and
//! its exit status says whether the purge is complete (0), accepted but not complete (2),
//! refused (1), or not asked properly (64).

use std::process::Command;

use super::purge::TOKEN;
use super::{SITE, get_site};
use outpost_e2e::process::binary;
use outpost_e2e::{EdgeProcess, Reply, ScriptedOrigin};

/// Runs `edge --config <edge's config> purge ARGS` with `env`; exit status and stdout + stderr.
fn purge_cli(edge: &EdgeProcess, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(binary("edge").expect("edge binary"))
        .arg("--config")
        .arg(edge.config_path())
        .arg("purge")
        .args(args)
        .env_remove("OUTPOST_ADMIN_URL")
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("running edge purge");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_cli_purges_and_says_by_its_exit_status_whether_it_is_complete()
-> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    origin.route(
        "/t",
        Reply::ok("max-age=3600", "tagged").header("Surrogate-Key", "t"),
    );
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!("[server]\nname = \"cli-node\"\n[admin]\ntoken = \"{TOKEN}\"\n"),
    )?;
    get_site(&edge, "/t", &[]).await?;
    assert!(get_site(&edge, "/t", &[]).await?.is_hit());

    // The token from the config the node runs with; the URL from its admin.listen.
    let (status, said) = purge_cli(&edge, &["--tag", "t", "--wait"], &[]);
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("(hard): complete") && said.contains("applied cli-node"),
        "{said}"
    );
    let after = get_site(&edge, "/t", &[]).await?;
    assert!(
        after.cache_status().contains("fwd=uri-miss"),
        "{}",
        after.cache_status()
    );
    assert_eq!(origin.count("/t"), 2);

    // A URL purge, soft, with the token from the environment (the config's is overridden).
    let url = format!("http://{SITE}/t");
    let (status, said) = purge_cli(
        &edge,
        &["--url", &url, "--soft", "--wait", "--token", "wrong"],
        &[],
    );
    assert_eq!(status, 1, "a wrong token is refused: {said}");
    assert!(said.contains("401"), "{said}");
    let (status, said) = purge_cli(
        &edge,
        &["--url", &url, "--soft", "--wait"],
        &[("OUTPOST_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("(soft): complete"), "{said}");

    // Nothing to purge, and nowhere to send it.
    assert_eq!(purge_cli(&edge, &[], &[]).0, 64);
    let (status, said) = purge_cli(&edge, &["--all", "--admin", "http://127.0.0.1:9"], &[]);
    assert_eq!(status, 1, "an unreachable admin listener: {said}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_another_region_has_not_taken_exits_2() -> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    let dead = outpost_e2e::process::free_port()?;
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!(
            "[server]\nname = \"cli-node\"\n[admin]\ntoken = \"{TOKEN}\"\n\
             [purge]\nregion = \"eu\"\nmax_wait_ms = 300\n\
             [[purge.regions]]\nname = \"us\"\nadmin_url = \"http://127.0.0.1:{dead}\"\n\
             token = \"other\"\n"
        ),
    )?;
    let (status, said) = purge_cli(&edge, &["--all", "--wait"], &[]);
    assert_eq!(status, 2, "{said}");
    assert!(
        said.contains("not complete") && said.contains("  us: pending"),
        "the other region is listed as not reached: {said}"
    );
    Ok(())
}
