//! Sites and TLS: two sites on one TLS listener, each with its own certificate (chosen by SNI)
//! and origin; HTTP/1.1 and HTTP/2 clients (the same answers on both; h2c beside HTTP/1.1 on a
//! plain listener); unknown and misdirected hosts refused; redirects to HTTPS; origins by DNS
//! name and over verified HTTPS; SIGHUP reloads under load; `--upgrade` under load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use outpost_e2e::process::{Signal, free_port};
use outpost_e2e::tls::{HttpVersion, Leaf, TestCa, TlsTerminator, handshake_info, https_client};
use outpost_e2e::wait::eventually;
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, http_client};

/// Listeners of one test edge.
struct Ports {
    plain: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
}

impl Ports {
    fn new() -> anyhow::Result<Self> {
        let port = |p: u16| -> anyhow::Result<SocketAddr> { Ok(format!("127.0.0.1:{p}").parse()?) };
        Ok(Self {
            plain: port(free_port()?)?,
            tls: port(free_port()?)?,
            admin: port(free_port()?)?,
        })
    }

    /// The parts of an edge config every test here shares: listeners, certificates, no drain.
    fn config(&self, certs: &[&Leaf], extra: &str) -> String {
        let mut c = format!(
            "[server]\nlisten = [\"{}\"]\nthreads = 2\ngrace_period_secs = 0\n\
             graceful_shutdown_timeout_secs = 1\n{extra}\n\
             [server.tls]\nlisten = [\"{}\"]\n",
            self.plain, self.tls
        );
        for leaf in certs {
            c.push_str(&format!(
                "[[server.tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                leaf.cert_path.display(),
                leaf.key_path.display()
            ));
        }
        c.push_str(&format!("[admin]\nlisten = \"{}\"\n", self.admin));
        c
    }
}

/// A `[[site]]` table: `name` for `hosts`, its origins at `addresses`.
fn site(name: &str, hosts: &[&str], addresses: &[String], origin_extra: &str) -> String {
    let quote = |v: &[String]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    format!(
        "[[site]]\nname = \"{name}\"\nhosts = [{}]\n[site.origin]\naddresses = [{}]\n\
         health_check_path = \"\"\nhealth_check_interval_ms = 100\n{origin_extra}\n",
        quote(&hosts),
        quote(addresses)
    )
}

/// Waits until a new edge started with `--upgrade` has bound its hand-off socket `path`. (Not
/// by connecting: the first connection it accepts there is taken for the hand-off itself.)
async fn listening_for_sockets(path: &std::path::Path) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(10),
        "the new edge on the hand-off socket",
        || {
            let bound = path.exists();
            async move { bound.then_some(()) }
        },
    )
    .await
}

/// The site most tests use: `a` for `a.test`, in front of `origin`.
fn site_a(origin: SocketAddr) -> String {
    site("a", &["a.test"], &[origin.to_string()], "")
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_share_a_tls_listener_by_sni_and_host() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let a_cert = ca.leaf("a", &["a.test"]);
    let b_cert = ca.leaf("b", &["b.test", "*.b.test"]);
    let (a, b) = (
        ScriptedOrigin::start().await?,
        ScriptedOrigin::start().await?,
    );
    a.route("/page", Reply::ok("max-age=600", "site a"));
    b.route("/page", Reply::ok("max-age=600", "site b"));
    let ports = Ports::new()?;
    let config = ports.config(&[&a_cert, &b_cert], "")
        + &site("a", &["a.test"], &[a.addr.to_string()], "")
        + &site("b", &["b.test", "*.b.test"], &[b.addr.to_string()], "");
    let edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;

    // SNI picks the certificate: exact, wildcard, and the first as the default.
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    for (sni, expected) in [
        (Some("a.test"), "a.test"),
        (Some("b.test"), "b.test"),
        (Some("x.b.test"), "b.test"),
        (Some("unknown.test"), "a.test"),
        (None, "a.test"),
    ] {
        let info = handshake_info(ports.tls, sni, alpn).await?;
        assert_eq!(
            info.leaf_names.first().map(String::as_str),
            Some(expected),
            "SNI {sni:?}"
        );
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]), "h2 offered");
    }

    // Each host gets its own site's content, over HTTP/1.1 and HTTP/2, from one cache.
    let resolve = [
        ("a.test", ports.tls),
        ("b.test", ports.tls),
        ("x.b.test", ports.tls),
    ];
    let h1 = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http1);
    let h2 = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http2);
    let url = |host: &str| format!("https://{host}:{}/page", ports.tls.port());
    let first = h1.get(url("a.test")).send().await?;
    assert_eq!(first.version(), http::Version::HTTP_11);
    assert!(
        !cache_status(&first).contains("; hit"),
        "{}",
        cache_status(&first)
    );
    assert_eq!(first.text().await?, "site a");
    let again = h2.get(url("a.test")).send().await?;
    assert_eq!(again.version(), http::Version::HTTP_2);
    let status = cache_status(&again);
    assert!(status.contains("; hit"), "a hit over HTTP/2: {status}");
    assert_eq!(again.text().await?, "site a");
    let other = h2.get(url("b.test")).send().await?;
    assert_eq!(other.version(), http::Version::HTTP_2);
    assert_eq!(other.text().await?, "site b");
    let wild = h1.get(url("x.b.test")).send().await?;
    assert_eq!(
        wild.text().await?,
        "site b",
        "the wildcard host is site b's"
    );
    assert_eq!(a.count("/page"), 1, "one origin request for site a");
    assert_eq!(b.count("/page"), 2, "b.test and x.b.test are two URLs");

    // A host no site claims gets 421, over TLS and plain HTTP alike, and no origin sees it.
    let plain = http_client()
        .get(format!("http://{}/page", ports.plain))
        .header("host", "c.test")
        .send()
        .await?;
    assert_eq!(plain.status(), 421);
    assert!(cache_status(&plain).contains("detail=unknown-host"));
    let plain_a = http_client()
        .get(format!("http://{}/page", ports.plain))
        .header("host", "a.test")
        .send()
        .await?;
    assert_eq!(
        plain_a.text().await?,
        "site a",
        "plain HTTP reaches the same site"
    );
    assert_eq!(
        (a.count("/page"), b.count("/page")),
        (2, 2),
        "http and https are two URLs"
    );

    // Per-site and TLS figures.
    assert!(
        edge.metric("outpost_site_requests_total{cache=\"hit\",site=\"a\"}")
            .await?
            >= 1.0
    );
    assert!(
        edge.metric("outpost_tls_handshakes_total{certificate=\"b.test\"}")
            .await?
            >= 2.0
    );
    assert!(edge.metric("outpost_unknown_host_requests_total").await? >= 1.0);
    let expiry = edge
        .metric("outpost_tls_certificate_expiry_seconds{certificate=\"a.test\"}")
        .await?;
    assert!(
        (29.0 * 86_400.0..=30.0 * 86_400.0).contains(&expiry),
        "{expiry}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_by_dns_name_and_over_verified_https() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let edge_cert = ca.leaf("edge", &["a.test", "b.test", "c.test", "d.test"]);
    let origin = ScriptedOrigin::start().await?;
    origin.route("/x", Reply::ok("max-age=600", "behind tls"));
    // The origin over HTTPS, its certificate for `localhost` from our CA; another from a CA
    // the edge does not trust.
    let good = TlsTerminator::start(&ca.leaf("origin", &["localhost"]), origin.addr).await;
    let rogue_ca = TestCa::new();
    let rogue = TlsTerminator::start(&rogue_ca.leaf("rogue", &["localhost"]), origin.addr).await;
    let ports = Ports::new()?;
    let tls = format!("tls = true\nca_file = \"{}\"\n", ca.ca_pem_path().display());
    let config = ports.config(&[&edge_cert], "")
        + &site(
            "a",
            &["a.test"],
            &[format!("localhost:{}", good.addr.port())],
            &tls,
        )
        + &site(
            "b",
            &["b.test"],
            &[format!("localhost:{}", rogue.addr.port())],
            &tls,
        )
        + &site(
            "c",
            &["c.test"],
            &[format!("localhost:{}", origin.addr.port())],
            "",
        )
        + &site("d", &["d.test"], &["nowhere.invalid:80".to_owned()], "");
    let edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let get = |host: &'static str| {
        let client = http_client();
        let url = format!("http://{}/x", ports.plain);
        async move { client.get(url).header("host", host).send().await }
    };

    let verified = get("a.test").await?;
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.text().await?, "behind tls");
    assert!(good.handshakes() >= 1);
    assert!(
        good.server_names()
            .iter()
            .all(|n| n.as_deref() == Some("localhost")),
        "the edge names the origin it verifies: {:?}",
        good.server_names()
    );

    let refused = get("b.test").await?;
    assert_eq!(
        refused.status(),
        502,
        "an origin certificate we cannot verify"
    );
    assert!(
        cache_status(&refused).contains("detail=origin-tls"),
        "{}",
        cache_status(&refused)
    );
    assert!(
        edge.metric("outpost_origin_errors_total{kind=\"tls\"}")
            .await?
            >= 1.0
    );

    // `localhost` may resolve to ::1 too, where nothing listens: the pool tries the next address.
    let by_name = get("c.test").await?;
    assert_eq!(by_name.status(), 200);
    assert_eq!(by_name.text().await?, "behind tls");
    assert_eq!(
        origin.count("/x"),
        2,
        "a.test and c.test; b.test never reached it"
    );

    // A name that never resolved: the origin side failed, not the edge.
    let unresolved = get("d.test").await?;
    assert_eq!(unresolved.status(), 502);
    assert!(
        cache_status(&unresolved).contains("detail=connect-failed"),
        "{}",
        cache_status(&unresolved)
    );
    Ok(())
}

/// Clients sending GETs, each on its own connections, until [`Load::finish`], counting answers
/// and failures.
#[derive(Default)]
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn add(&mut self, client: reqwest::Client, url: String) {
        let (stop, ok, failed) = (self.stop.clone(), self.ok.clone(), self.failed.clone());
        self.clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("status {}", r.status()));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{e:#}"));
                    }
                }
            }
            errors
        }));
    }

    /// Waits until `n` more answers than now have come back.
    async fn served(&self, n: usize, what: &str) -> anyhow::Result<()> {
        let from = self.ok.load(Ordering::Relaxed);
        eventually(Duration::from_secs(10), what, || {
            let now = self.ok.load(Ordering::Relaxed);
            async move { (now >= from + n).then_some(()) }
        })
        .await
    }

    /// Stops the clients; fails if any request failed, with why.
    async fn finish(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for client in self.clients {
            errors.extend(client.await?);
        }
        let failed = self.failed.load(Ordering::Relaxed);
        anyhow::ensure!(failed == 0, "{failed} failed requests: {errors:?}");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_certificate_and_adds_a_site_under_load() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let first = ca.leaf("a1", &["a.test"]);
    let origin = ScriptedOrigin::start().await?;
    origin.route("/page", Reply::ok("max-age=600", "page"));
    let ports = Ports::new()?;
    let sites_a = site_a(origin.addr);
    let edge = EdgeProcess::start_with(
        &(ports.config(&[&first], "") + &sites_a),
        ports.plain,
        ports.admin,
        &[],
    )?;
    let resolve = [("a.test", ports.tls), ("c.test", ports.tls)];
    let url = format!("https://a.test:{}/page", ports.tls.port());
    let mut load = Load::default();
    for version in [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Http1] {
        load.add(https_client(&ca.ca_pem(), &resolve, version), url.clone());
    }
    load.served(50, "load running").await?;

    // A renewed certificate for a.test (now also naming c.test), and a new site c.
    let renewed = ca.leaf("a2", &["a.test", "c.test"]);
    let sites_c = site("c", &["c.test"], &[origin.addr.to_string()], "");
    std::fs::write(
        edge.config_path(),
        ports.config(&[&renewed], "") + &sites_a + &sites_c,
    )?;
    edge.signal(Signal::SIGHUP)?;
    edge.metric_reaches("outpost_config_reloads_total{result=\"applied\"}", 1.0)
        .await?;
    let info = handshake_info(ports.tls, Some("a.test"), &[b"http/1.1"]).await?;
    assert_eq!(
        info.leaf_names,
        ["a.test", "c.test"],
        "new handshakes get the new certificate"
    );
    let c = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http2)
        .get(format!("https://c.test:{}/page", ports.tls.port()))
        .send()
        .await?;
    assert_eq!(c.status(), 200, "the new site serves");
    load.served(50, "load continuing after the reload").await?;
    load.finish().await?;
    assert!(
        origin.count("/page") <= 3,
        "the cache survived the reload: {}",
        origin.count("/page")
    );

    // Renewal as an ACME client does it: new files at the same paths, then SIGHUP.
    ca.leaf("a2", &["a.test", "c.test", "renewed.test"]);
    edge.signal(Signal::SIGHUP)?;
    eventually(
        Duration::from_secs(10),
        "the renewed certificate served",
        || async {
            let info = handshake_info(ports.tls, Some("a.test"), &[b"http/1.1"])
                .await
                .ok()?;
            (info.leaf_names.len() == 3).then_some(())
        },
    )
    .await?;
    assert_eq!(
        edge.metric("outpost_config_reloads_total{result=\"applied\"}")
            .await?,
        2.0
    );

    // An invalid config is refused whole, and the running one keeps serving.
    std::fs::write(
        edge.config_path(),
        ports.config(&[&renewed], "") + &sites_a + &site("d", &["d.test"], &["nowhere".into()], ""),
    )?;
    edge.signal(Signal::SIGHUP)?;
    edge.metric_reaches("outpost_config_reloads_total{result=\"refused\"}", 1.0)
        .await?;
    // Logged before counted; the log reader may still be a line behind.
    eventually(Duration::from_secs(10), "the refusal logged", || {
        let logged = edge.logs().contains("config reload refused");
        async move { logged.then_some(()) }
    })
    .await?;
    let logs = edge.logs();
    assert!(
        logs.contains("site[1].hosts[0]"),
        "the uncovered host is named: {logs}"
    );
    assert!(
        logs.contains("site[1].origin.addresses[0]"),
        "the bad address is named"
    );
    let still = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http1)
        .get(format!("https://c.test:{}/page", ports.tls.port()))
        .send()
        .await?;
    assert_eq!(still.status(), 200, "the running config still serves");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hands_the_listeners_over_under_load() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route("/warm", Reply::ok("max-age=600", "warm"));
    origin.route("/load", Reply::ok("max-age=600", "load"));
    let ports = Ports::new()?;
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let socket = tempfile::tempdir()?;
    let extra = format!(
        "upgrade_socket = \"{}\"\n",
        socket.path().join("upgrade.sock").display()
    );
    let config = ports.config(&[&cert], &extra)
        + &site_a(origin.addr)
        + &format!("[l2]\nservers = [\"{}\"]\n", memcached.addr);
    let mut old = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let client = http_client();
    let warm = format!("http://{}/warm", ports.plain);
    let first = client.get(&warm).header("host", "a.test").send().await?;
    assert_eq!(first.text().await?, "warm");
    old.metric_reaches("outpost_l2_writes_total{result=\"stored\"}", 1.0)
        .await?;

    let resolve = [("a.test", ports.tls)];
    let plain = reqwest::Client::builder()
        .resolve("a.test", ports.plain)
        .no_proxy()
        .build()?;
    let mut load = Load::default();
    load.add(plain, format!("http://a.test:{}/load", ports.plain.port()));
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        load.add(
            https_client(&ca.ca_pem(), &resolve, version),
            format!("https://a.test:{}/load", ports.tls.port()),
        );
    }
    load.served(50, "load running").await?;

    // The new process waits for the sockets; SIGQUIT makes the old one send them.
    let old_pid = old.pid();
    let new = std::thread::spawn({
        let config = config.clone();
        let (plain, admin) = (ports.plain, ports.admin);
        move || EdgeProcess::start_with(&config, plain, admin, &["--upgrade"])
    });
    // The operator's order: the new one listens on the hand-off socket, then the old one is told.
    listening_for_sockets(&socket.path().join("upgrade.sock")).await?;
    old.signal(Signal::SIGQUIT)?;
    let new = new
        .join()
        .map_err(|_| anyhow::anyhow!("the new edge panicked"))??;
    assert_ne!(new.pid(), old_pid);
    let exited = tokio::task::block_in_place(|| old.exited_within(Duration::from_secs(20)))?;
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old edge stops cleanly: {exited:?}"
    );
    load.served(50, "load served by the new edge").await?;
    load.finish().await?;

    // The new process's L1 is empty: the warm object comes from the shared tier.
    let again = client.get(&warm).header("host", "a.test").send().await?;
    let status = cache_status(&again);
    assert!(
        status.contains("; hit") && status.contains("detail=l2"),
        "{status}"
    );
    assert_eq!(origin.count("/warm"), 1, "the origin was not asked again");
    drop(new);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_certificate_does_not_serve_is_misdirected_and_http_redirects()
-> anyhow::Result<()> {
    let ca = TestCa::new();
    let a_cert = ca.leaf("a", &["a.test"]);
    let bc_cert = ca.leaf("bc", &["b.test", "c.test"]);
    let origin = ScriptedOrigin::start().await?;
    origin.route("/page", Reply::ok("max-age=600", "page"));
    let ports = Ports::new()?;
    let addr = [origin.addr.to_string()];
    let config = ports.config(&[&a_cert, &bc_cert], "")
        + &site("a", &["a.test"], &addr, "")
        + &site("b", &["b.test"], &addr, "")
        + &site("c", &["c.test"], &addr, "").replacen(
            "[site.origin]",
            "redirect_to_https = true\n[site.origin]",
            1,
        );
    let _edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let resolve = [("a.test", ports.tls), ("b.test", ports.tls)];
    let client = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http1);
    let on = |sni: &str| format!("https://{sni}:{}/page", ports.tls.port());

    // SNI a.test, Host b.test: a.test's certificate does not serve b.test (domain fronting).
    let fronted = client
        .get(on("a.test"))
        .header("host", "b.test")
        .send()
        .await?;
    assert_eq!(fronted.status(), 421);
    assert!(
        cache_status(&fronted).contains("detail=misdirected"),
        "{}",
        cache_status(&fronted)
    );
    // SNI b.test, Host c.test: one certificate serves both, as a browser coalescing them knows.
    let coalesced = client
        .get(on("b.test"))
        .header("host", "c.test")
        .send()
        .await?;
    assert_eq!(coalesced.status(), 200);
    assert_eq!(
        origin.count("/page"),
        1,
        "the misdirected request reached no origin"
    );

    // Site c wants HTTPS: plain GETs get 301, other methods 308 (method and body kept).
    let plain = http_client();
    let get = plain
        .get(format!("http://{}/page?x=1", ports.plain))
        .header("host", "c.test")
        .send()
        .await?;
    assert_eq!(get.status(), 301);
    assert_eq!(get.headers()["location"], "https://c.test/page?x=1");
    let post = plain
        .post(format!("http://{}/form", ports.plain))
        .header("host", "c.test")
        .body("x")
        .send()
        .await?;
    assert_eq!(post.status(), 308);
    let other = plain
        .get(format!("http://{}/page", ports.plain))
        .header("host", "a.test")
        .send()
        .await?;
    assert_eq!(other.status(), 200, "site a takes plain HTTP");
    assert_eq!(origin.count("/page"), 2);
    Ok(())
}

/// A request: method, path, header fields.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// What a client sees of an answer that should not depend on the HTTP version.
async fn seen(r: reqwest::Response) -> anyhow::Result<Vec<String>> {
    let mut seen = vec![r.status().to_string()];
    for name in [
        "cache-status",
        "etag",
        "vary",
        "content-range",
        "content-length",
        "content-type",
        "via",
    ] {
        let value = r
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        seen.push(format!("{name}: {value}"));
    }
    // Age in whole seconds (the origin's Date was 30 s old): the same on both but for a
    // second boundary between the two requests, so in tens.
    let age = r
        .headers()
        .get("age")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    seen.push(format!("age: {:?}", age.map(|a| a / 10)));
    seen.push(format!("{} bytes", r.bytes().await?.len()));
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_answers_as_http1_does() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let origin = ScriptedOrigin::start().await?;
    let dated = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(30));
    origin.route(
        "/obj",
        Reply::ok("max-age=600", vec![b'x'; 5000])
            .header("ETag", "\"v1\"")
            .header("Date", &dated),
    );
    origin.route(
        "/lang",
        Reply::ok("max-age=600", "bonjour").header("Vary", "Accept-Language"),
    );
    let ports = Ports::new()?;
    let config = ports.config(&[&cert], "") + &site_a(origin.addr);
    let _edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let resolve = [("a.test", ports.tls)];
    let h1 = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http1);
    let h2 = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http2);
    let url = |path: &str| format!("https://a.test:{}{path}", ports.tls.port());
    // Warm both objects (and the French variant) first: then every request below is a hit.
    h1.get(url("/obj")).send().await?.bytes().await?;
    h1.get(url("/lang"))
        .header("accept-language", "fr")
        .send()
        .await?
        .bytes()
        .await?;

    let cases: Vec<Case<'_>> = vec![
        ("GET", "/obj", vec![]),
        ("HEAD", "/obj", vec![]),
        ("GET", "/obj", vec![("if-none-match", "\"v1\"")]),
        ("GET", "/obj", vec![("range", "bytes=10-19")]),
        ("GET", "/obj", vec![("range", "bytes=9000-")]),
        ("GET", "/lang", vec![("accept-language", "fr")]),
        ("GET", "/obj", vec![("cache-control", "only-if-cached")]),
    ];
    for (method, path, headers) in cases {
        let mut answers = Vec::new();
        for client in [&h1, &h2] {
            let mut req = client.request(method.parse()?, url(path));
            for (name, value) in &headers {
                req = req.header(*name, *value);
            }
            answers.push(seen(req.send().await?).await?);
        }
        assert_eq!(
            answers[0], answers[1],
            "{method} {path} {headers:?}: HTTP/1.1 vs HTTP/2"
        );
        assert!(
            answers[0][1].contains("; hit"),
            "{method} {path}: {:?}",
            answers[0]
        );
    }
    // A HEAD that misses fills the cache with a GET and answers without its body, on both.
    for (client, path) in [(&h2, "/cold-h2"), (&h1, "/cold-h1")] {
        origin.route(path, Reply::ok("max-age=600", vec![b'y'; 3000]));
        let head = client.head(url(path)).send().await?;
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(head.headers()["content-length"], "3000");
        assert!(head.bytes().await?.is_empty());
        let get = h1.get(url(path)).send().await?;
        assert!(
            cache_status(&get).contains("; hit"),
            "{path}: {}",
            cache_status(&get)
        );
        assert_eq!(get.bytes().await?.len(), 3000);
    }

    // HTTP/1.1 carries the stored Date (RFC 9110 §6.6.1). Pingora's HTTP/2 server stamps the
    // current time over any Date, below anything the proxy can reach (docs/http-semantics.md);
    // Age, which freshness downstream is computed from, is the same on both.
    let date = |r: &reqwest::Response| r.headers().get("date").cloned();
    let on_h1 = h1.get(url("/obj")).send().await?;
    assert_eq!(
        date(&on_h1).as_ref().and_then(|d| d.to_str().ok()),
        Some(dated.as_str())
    );
    assert!(date(&h2.get(url("/obj")).send().await?).is_some());
    assert_eq!(origin.count("/obj"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_on_a_plain_listener_leaves_http1_alone() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = ScriptedOrigin::start().await?;
    origin.route("/page", Reply::ok("max-age=600", "page"));
    let edge = EdgeProcess::start(
        &[origin.addr],
        "[server]\nh2c = true\nrequest_head_timeout_ms = 500\n",
    )?;
    let h2c = outpost_e2e::tls::h2c_client();
    let url = edge.url("/page");
    let first = h2c.get(&url).send().await?;
    assert_eq!(first.version(), http::Version::HTTP_2);
    assert_eq!(first.text().await?, "page");
    let hit = h2c.get(&url).send().await?;
    assert!(
        cache_status(&hit).contains("; hit"),
        "{}",
        cache_status(&hit)
    );
    let h1 = http_client().get(&url).send().await?;
    assert_eq!(h1.version(), http::Version::HTTP_11);
    assert!(cache_status(&h1).contains("; hit"), "one cache for both");

    // A request shorter than the preface is answered at once (a 24-byte peek would hang it):
    // here a 400, for an HTTP/1.0 request without Host.
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        outpost_e2e::raw::exchange(edge.addr, b"GET /page HTTP/1.0\r\n\r\n"),
    )
    .await??;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Part of a preface, then nothing: closed at the head deadline, and counted.
    let mut stalled = tokio::net::TcpStream::connect(edge.addr).await?;
    stalled.write_all(b"PRI * HTTP/2").await?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    assert!(
        edge.metric("outpost_client_errors_total{kind=\"head_timeout\"}")
            .await?
            >= 1.0
    );
    assert_eq!(origin.count("/page"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_that_give_up_leave_the_error_log_quiet() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let origin = ScriptedOrigin::start().await?;
    origin.route("/page", Reply::ok("max-age=600", "page"));
    let ports = Ports::new()?;
    let config = ports.config(&[&cert], "") + &site_a(origin.addr);
    let edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let resolve = [("a.test", ports.tls)];
    let url = format!("https://a.test:{}/page", ports.tls.port());
    for _ in 0..10 {
        // A port probe, a client that stops mid-hello, one that does not trust the certificate.
        drop(tokio::net::TcpStream::connect(ports.tls).await?);
        let mut partial = tokio::net::TcpStream::connect(ports.tls).await?;
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await?;
        drop(partial);
        let stranger = https_client(&TestCa::new().ca_pem(), &resolve, HttpVersion::Http1);
        assert!(
            stranger.get(&url).send().await.is_err(),
            "an untrusted certificate"
        );
    }
    let ok = https_client(&ca.ca_pem(), &resolve, HttpVersion::Http2)
        .get(&url)
        .send()
        .await?;
    assert_eq!(ok.status(), 200, "served meanwhile");
    // Its access line comes last (queued after the answer): the handshakes before it were
    // logged by then.
    eventually(Duration::from_secs(10), "the access line", || {
        let written = !edge.access_lines().is_empty();
        async move { written.then_some(()) }
    })
    .await?;
    let logs = edge.logs();
    let noisy: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(noisy.is_empty(), "noise in the error log: {noisy:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_that_drops_a_listener_closes_it() -> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    origin.route("/page", Reply::ok("max-age=600", "page"));
    let ports = Ports::new()?;
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let socket = tempfile::tempdir()?;
    let extra = format!(
        "upgrade_socket = \"{}\"\n",
        socket.path().join("upgrade.sock").display()
    );
    let sites = site_a(origin.addr);
    let with_tls = ports.config(&[&cert], &extra) + &sites;
    let mut old = EdgeProcess::start_with(&with_tls, ports.plain, ports.admin, &[])?;
    // The new config has no TLS listener.
    let plain_only = with_tls[..with_tls.find("[server.tls]").expect("tls section")].to_owned()
        + &format!("[admin]\nlisten = \"{}\"\n", ports.admin)
        + &sites;
    let new = std::thread::spawn({
        let (plain, admin) = (ports.plain, ports.admin);
        move || EdgeProcess::start_with(&plain_only, plain, admin, &["--upgrade"])
    });
    listening_for_sockets(&socket.path().join("upgrade.sock")).await?;
    old.signal(Signal::SIGQUIT)?;
    let new = new
        .join()
        .map_err(|_| anyhow::anyhow!("the new edge panicked"))??;
    let exited = tokio::task::block_in_place(|| old.exited_within(Duration::from_secs(20)))?;
    assert!(exited.is_some(), "the old edge stopped");
    let plain = http_client()
        .get(format!("http://{}/page", ports.plain))
        .header("host", "a.test")
        .send()
        .await?;
    assert_eq!(plain.status(), 200, "the kept listener serves");
    assert!(
        tokio::net::TcpStream::connect(ports.tls).await.is_err(),
        "nothing accepts on the dropped listener"
    );
    eventually(
        Duration::from_secs(10),
        "the dropped listener closed",
        || {
            let closed = new.logs().contains("not claimed by any service");
            async move { closed.then_some(()) }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origins_are_health_checked_by_their_own_name() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let origin = ScriptedOrigin::start().await?;
    origin.route("/healthz", Reply::new(204));
    let over_tls = TlsTerminator::start(&ca.leaf("origin", &["localhost"]), origin.addr).await;
    let ports = Ports::new()?;
    let edge_cert = ca.leaf("edge", &["a.test"]);
    let origin_keys = format!(
        "tls = true\nca_file = \"{}\"\nhealth_check_path = \"/healthz\"\n",
        ca.ca_pem_path().display()
    );
    let config = ports.config(&[&edge_cert], "")
        + &site(
            "a",
            &["a.test"],
            &[format!("localhost:{}", over_tls.addr.port())],
            "",
        )
        .replace("health_check_path = \"\"\n", &origin_keys);
    let edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    // Every check is a verified HTTPS GET naming `localhost`; a 204 is healthy.
    eventually(Duration::from_secs(10), "a health check", || async {
        (origin.count("/healthz") >= 2).then_some(())
    })
    .await?;
    let checks: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/healthz")
        .collect();
    assert!(
        checks.iter().all(|r| r.header("host") == Some("localhost")),
        "{:?}",
        checks.iter().map(|r| r.header("host")).collect::<Vec<_>>()
    );
    assert!(
        over_tls
            .server_names()
            .iter()
            .all(|n| n.as_deref() == Some("localhost"))
    );
    let origins = http_client().get(edge.admin_url("/origins")).send().await?;
    assert_eq!(origins.status(), 200, "healthy on a 204");
    // A failing check takes the address out: the site has none healthy.
    origin.route("/healthz", Reply::new(503));
    eventually(
        Duration::from_secs(10),
        "the site reported down",
        || async {
            let r = http_client()
                .get(edge.admin_url("/origins"))
                .send()
                .await
                .ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_a_site_to_other_origins_leaves_no_ghost_series() -> anyhow::Result<()>
{
    let (before, after) = (
        ScriptedOrigin::start().await?,
        ScriptedOrigin::start().await?,
    );
    before.route("/page", Reply::ok("no-store", "before"));
    after.route("/page", Reply::ok("no-store", "after"));
    let ports = Ports::new()?;
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let config = |origin: &ScriptedOrigin| ports.config(&[&cert], "") + &site_a(origin.addr);
    let edge = EdgeProcess::start_with(&config(&before), ports.plain, ports.admin, &[])?;
    let page = || async {
        http_client()
            .get(format!("http://{}/page", ports.plain))
            .header("host", "a.test")
            .send()
            .await?
            .text()
            .await
    };
    assert_eq!(page().await?, "before");
    let series = |origin: &ScriptedOrigin| {
        format!(
            "outpost_origin_healthy{{origin=\"{}\",site=\"a\"}}",
            origin.addr
        )
    };
    let metrics = || async {
        http_client()
            .get(edge.admin_url("/metrics"))
            .send()
            .await?
            .text()
            .await
    };
    assert!(metrics().await?.contains(&series(&before)));
    std::fs::write(edge.config_path(), config(&after))?;
    edge.signal(Signal::SIGHUP)?;
    edge.metric_reaches("outpost_config_reloads_total{result=\"applied\"}", 1.0)
        .await?;
    assert_eq!(page().await?, "after");
    let text = metrics().await?;
    assert!(text.contains(&series(&after)), "{text}");
    assert!(!text.contains(&series(&before)), "a ghost origin: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_in_a_memory_file_is_served_over_tls() -> anyhow::Result<()> {
    let ca = TestCa::new();
    let cert = ca.leaf("a", &["a.test"]);
    let origin = ScriptedOrigin::start().await?;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    origin.route("/big", Reply::ok("max-age=600", body.clone()));
    let ports = Ports::new()?;
    let config = ports.config(&[&cert], "") + &site_a(origin.addr);
    let edge = EdgeProcess::start_with(&config, ports.plain, ports.admin, &[])?;
    let resolve = [("a.test", ports.tls)];
    let url = format!("https://a.test:{}/big", ports.tls.port());
    for version in [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Http1] {
        let res = https_client(&ca.ca_pem(), &resolve, version)
            .get(&url)
            .send()
            .await?;
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await?.as_ref(), &body[..], "{version:?}");
    }
    assert_eq!(origin.count("/big"), 1);
    // Kept in a memory file; HTTP/1.1 hits on the hit path read it from there (no sendfile on
    // TLS), HTTP/2 ones through the proxy.
    assert_eq!(edge.metric("outpost_l1_body_files").await?, 1.0);
    assert_eq!(edge.metric("outpost_hit_path_answers_total").await?, 1.0);
    Ok(())
}
