//! The database: images, their content-addressed bytes, likes. One set of queries runs on SQLite
//! (the default, a single file in WAL mode) and on PostgreSQL (when the URL says `postgres://`),
//! through sqlx's `Any` driver; only the migrations differ per backend.
//!
//! Image bytes live in the database, not on a local disk, so any number of origins behind the
//! edge share one source of truth. Every write is a single transaction: a failed upload or filter
//! leaves neither an image row nor unreferenced bytes behind.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Executor, Row};

use crate::filters::Filter;
use crate::media::{Encoded, MediaType};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if we support it.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image {0} does not exist")]
    NoSuchImage(i64),
    #[error("unsupported database URL (expected sqlite:… or postgres://…): {0}")]
    UnsupportedUrl(String),
    #[error("{context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("preparing the SQLite directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, StoreError>;

trait Context<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Db { context, source })
    }
}

/// An image as the pages and the API show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub id: i64,
    pub name: String,
    /// The image this one was derived from by a filter.
    pub parent_id: Option<i64>,
    /// The filter that produced this image from its parent.
    pub filter: Option<String>,
    pub media_sha256: String,
    pub media_type: MediaType,
    pub likes: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl Image {
    /// The immutable, content-addressed URL of the image's bytes.
    pub fn media_url(&self) -> String {
        media_url(&self.media_sha256, self.media_type)
    }
}

pub fn media_url(sha256: &str, media_type: MediaType) -> String {
    format!("/media/{sha256}.{}", media_type.extension())
}

/// What an upload or a filter adds.
pub struct NewImage<'a> {
    pub name: &'a str,
    pub parent_id: Option<i64>,
    pub filter: Option<Filter>,
    pub media: &'a Encoded,
}

/// Stored image bytes.
pub struct Media {
    pub media_type: MediaType,
    pub bytes: Vec<u8>,
}

/// One page of images, newest first.
#[derive(Debug)]
pub struct ImagePage {
    pub items: Vec<Image>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// Row counts, for tests that prove a failed write left nothing behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub images: i64,
    pub media: i64,
}

/// Cheap to clone: a handle to the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Selects every column [`image_from_row`] reads, from `images i` joined with its media.
macro_rules! select_images {
    ($($rest:literal)*) => {
        concat!(
            "SELECT i.id, i.name, i.parent_id, i.filter, i.media_sha256, m.content_type, i.likes, \
             i.created_at FROM images i JOIN media m ON m.sha256 = i.media_sha256 ",
            $($rest),*
        )
    };
}

impl Store {
    /// Connects, creating the SQLite file (and its directory) if needed, and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; NORMAL is durable in WAL mode
                        // except for the last transactions on power loss, never corrupt.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 5000",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .context("connecting to the database")?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Round-trips a trivial query: the readiness check.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("pinging the database")?;
        Ok(())
    }

    /// Adds an image and, unless identical bytes are already stored, its bytes: both or neither.
    pub async fn create_image(&self, new: NewImage<'_>) -> Result<Image> {
        let now = now_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting the image transaction")?;
        sqlx::query(
            "INSERT INTO media (sha256, content_type, width, height, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(new.media.sha256.as_str())
        .bind(new.media.media_type.content_type())
        .bind(i64::from(new.media.width))
        .bind(i64::from(new.media.height))
        .bind(new.media.bytes.as_slice())
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("storing image bytes")?;
        let inserted = sqlx::query(
            "INSERT INTO images (name, parent_id, filter, media_sha256, likes, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
        )
        .bind(new.name)
        .bind(new.parent_id)
        .bind(new.filter.map(Filter::name))
        .bind(new.media.sha256.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id").context("reading the new image id")?,
            // Dropping `tx` rolls the bytes back too.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(StoreError::NoSuchImage(new.parent_id.unwrap_or_default()));
            }
            Err(e) => {
                return Err(StoreError::Db {
                    context: "inserting the image",
                    source: e,
                });
            }
        };
        tx.commit().await.context("committing the image")?;
        Ok(Image {
            id,
            name: new.name.to_owned(),
            parent_id: new.parent_id,
            filter: new.filter.map(|f| f.name().to_owned()),
            media_sha256: new.media.sha256.clone(),
            media_type: new.media.media_type,
            likes: 0,
            created_at_ms: now,
        })
    }

    pub async fn image(&self, id: i64) -> Result<Option<Image>> {
        sqlx::query(select_images!("WHERE i.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("loading an image")?
            .map(|row| image_from_row(&row))
            .transpose()
    }

    /// Images derived from `id`, newest first, at most `limit`.
    pub async fn children(&self, id: i64, limit: u32) -> Result<Vec<Image>> {
        let rows = sqlx::query(select_images!(
            "WHERE i.parent_id = $1 ORDER BY i.id DESC LIMIT $2"
        ))
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("loading derived images")?;
        rows.iter().map(image_from_row).collect()
    }

    /// Up to `limit` images older than `before` (all images when `None`), newest first.
    pub async fn list(&self, before: Option<i64>, limit: u32) -> Result<ImagePage> {
        let rows = sqlx::query(select_images!(
            "WHERE i.id < $1 ORDER BY i.id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .context("listing images")?;
        let mut items = rows
            .iter()
            .map(image_from_row)
            .collect::<Result<Vec<_>>>()?;
        let has_next = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_before = if has_next {
            items.last().map(|i| i.id)
        } else {
            None
        };
        Ok(ImagePage { items, next_before })
    }

    /// Adds one like; the new count, or `None` if there is no such image.
    pub async fn like(&self, id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("UPDATE images SET likes = likes + 1 WHERE id = $1 RETURNING likes")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("adding a like")?;
        row.map(|r| r.try_get("likes"))
            .transpose()
            .context("reading the like count")
    }

    pub async fn media(&self, sha256: &str) -> Result<Option<Media>> {
        let row = sqlx::query("SELECT content_type, bytes FROM media WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .context("loading image bytes")?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Media {
            media_type: media_type_from_row(&row)?,
            bytes: row.try_get("bytes").context("reading image bytes")?,
        }))
    }

    /// The stored type of `sha256`'s bytes without loading them (for conditional requests).
    pub async fn media_type(&self, sha256: &str) -> Result<Option<MediaType>> {
        sqlx::query("SELECT content_type FROM media WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .context("looking up image bytes")?
            .map(|row| media_type_from_row(&row))
            .transpose()
    }

    pub async fn counts(&self) -> Result<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM images) AS images, (SELECT COUNT(*) FROM media) AS media",
        )
        .fetch_one(&self.pool)
        .await
        .context("counting rows")?;
        Ok(Counts {
            images: row.try_get("images").context("reading the image count")?,
            media: row.try_get("media").context("reading the media count")?,
        })
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn image_from_row(row: &AnyRow) -> Result<Image> {
    let get = |e| StoreError::Db {
        context: "reading an image row",
        source: e,
    };
    Ok(Image {
        id: row.try_get("id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        parent_id: row.try_get("parent_id").map_err(get)?,
        filter: row.try_get("filter").map_err(get)?,
        media_sha256: row.try_get("media_sha256").map_err(get)?,
        media_type: media_type_from_row(row)?,
        likes: row.try_get("likes").map_err(get)?,
        created_at_ms: row.try_get("created_at").map_err(get)?,
    })
}

fn media_type_from_row(row: &AnyRow) -> Result<MediaType> {
    let ct: String = row
        .try_get("content_type")
        .context("reading a content type")?;
    MediaType::from_content_type(&ct)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown stored content type {ct:?}")))
}

/// Makes sure the SQLite file can be created: its directory exists and the URL asks for `rwc`.
fn prepare_sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(if query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("{url}?mode=rwc")
    } else {
        format!("{url}&mode=rwc")
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_recognised_by_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/origin.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/x.db", dir.path().display());
        assert_eq!(
            prepare_sqlite_url(&url).expect("ok"),
            format!("{url}?mode=rwc")
        );
        assert!(dir.path().join("sub").is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:?mode=ro").expect("ok"),
            "sqlite::memory:?mode=ro"
        );
    }
}
