//! A private database per test, on either backend, dropped afterwards.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a fresh schema in the server named by
//! `OUTPOST_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`, what
//! `scripts/test` provides), selected through the connection's `search_path`, so tests run in
//! parallel without seeing each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use sqlx::Connection;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

pub struct TestDatabase {
    /// The URL the code under test connects to.
    pub url: String,
    pub backend: Backend,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// The schema to drop, with the server URL to drop it through.
    schema: Option<(String, String)>,
}

pub fn postgres_server_url() -> String {
    std::env::var("OUTPOST_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let url = format!("sqlite://{}", dir.path().join("origin.db").display());
        Ok(Self {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            schema: None,
        })
    }

    pub async fn postgres() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = postgres_server_url();
        let schema = format!(
            "outpost_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .with_context(|| {
                format!(
                    "connecting to PostgreSQL at {server} (set OUTPOST_TEST_POSTGRES_URL, or run \
                 scripts/test, which starts one)"
                )
            })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options[search_path]={schema}");
        Ok(Self {
            url,
            backend: Backend::Postgres,
            _dir: None,
            schema: Some((server, schema)),
        })
    }

    /// Rows in `images` and `media`, read directly from the database.
    pub async fn counts(&self) -> anyhow::Result<(i64, i64)> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
        let row: (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM images), (SELECT COUNT(*) FROM media)")
                .fetch_one(&mut conn)
                .await
                .context("counting rows")?;
        Ok(row)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, schema)) = self.schema.take() else {
            return;
        };
        // Drop may run inside an async test; use a thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test schema");
        }
    }
}
