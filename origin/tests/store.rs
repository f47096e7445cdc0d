//! The store's contract, run against both backends: every test here exists as `<name>::sqlite`
//! and `<name>::postgres`, each on its own fresh database.

use origin::filters::Filter;
use origin::media::{self, DecodeLimits, Encoded};
use origin::store::{Counts, NewImage, Store, StoreError};
use outpost_e2e::{Backend, TestDatabase, fixtures};

const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 12_000,
    max_pixels: 40_000_000,
};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(outpost_e2e::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() -> anyhow::Result<()> {
                super::$name(outpost_e2e::Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    images_round_trip_with_their_bytes,
    listing_paginates_newest_first_without_gaps,
    identical_bytes_are_stored_once,
    a_failed_write_leaves_no_row_and_no_bytes,
    parents_and_children_are_linked,
    concurrent_likes_are_all_counted,
    data_survives_a_reconnect,
);

async fn open(backend: Backend) -> anyhow::Result<(TestDatabase, Store)> {
    let db = TestDatabase::new(backend).await?;
    let store = Store::connect(&db.url, 4).await?;
    Ok((db, store))
}

fn encoded(seed: u32) -> Encoded {
    let bytes = fixtures::jpeg(24, 16, seed);
    let decoded = media::decode(&bytes, LIMITS).expect("fixture decodes");
    media::describe(bytes, &decoded)
}

fn upload<'a>(name: &'a str, media: &'a Encoded) -> NewImage<'a> {
    NewImage {
        name,
        parent_id: None,
        filter: None,
        media,
    }
}

async fn images_round_trip_with_their_bytes(backend: Backend) -> anyhow::Result<()> {
    let (_db, store) = open(backend).await?;
    let media = encoded(1);
    let created = store
        .create_image(upload("Beach <at> night", &media))
        .await?;
    let read = store.image(created.id).await?.expect("stored");
    assert_eq!(read, created);
    assert_eq!(read.media_url(), format!("/media/{}.jpg", media.sha256));
    let stored = store.media(&media.sha256).await?.expect("bytes stored");
    assert_eq!(stored.bytes, media.bytes, "bytes come back unchanged");
    assert_eq!(
        store.media_type(&media.sha256).await?,
        Some(media.media_type)
    );
    assert!(store.image(created.id + 1000).await?.is_none());
    assert!(store.media(&"0".repeat(64)).await?.is_none());
    store.ping().await?;
    Ok(())
}

async fn listing_paginates_newest_first_without_gaps(backend: Backend) -> anyhow::Result<()> {
    let (_db, store) = open(backend).await?;
    let mut created = Vec::new();
    for seed in 0..25 {
        let media = encoded(seed);
        created.push(
            store
                .create_image(upload(&format!("img {seed}"), &media))
                .await?
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list(before, 7).await?;
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|i| i.id));
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "every image exactly once, newest first");
    let last = store.list(None, 25).await?;
    assert_eq!(last.items.len(), 25);
    assert_eq!(
        last.next_before, None,
        "an exactly full page has no next page"
    );
    Ok(())
}

async fn identical_bytes_are_stored_once(backend: Backend) -> anyhow::Result<()> {
    let (_db, store) = open(backend).await?;
    let media = encoded(7);
    let a = store.create_image(upload("first", &media)).await?;
    let b = store.create_image(upload("second", &media)).await?;
    assert_ne!(a.id, b.id);
    assert_eq!(a.media_url(), b.media_url());
    assert_eq!(
        store.counts().await?,
        Counts {
            images: 2,
            media: 1
        }
    );
    Ok(())
}

async fn a_failed_write_leaves_no_row_and_no_bytes(backend: Backend) -> anyhow::Result<()> {
    let (db, store) = open(backend).await?;
    store.create_image(upload("kept", &encoded(1))).await?;
    let before = store.counts().await?;
    // New bytes whose image row fails (its parent does not exist): the bytes must roll back.
    let orphan = encoded(2);
    let err = store
        .create_image(NewImage {
            name: "child",
            parent_id: Some(9_999),
            filter: Some(Filter::Sepia),
            media: &orphan,
        })
        .await
        .expect_err("no such parent");
    assert!(matches!(err, StoreError::NoSuchImage(9_999)), "{err}");
    assert_eq!(store.counts().await?, before);
    assert!(
        store.media(&orphan.sha256).await?.is_none(),
        "no orphan bytes"
    );
    // A name the schema refuses fails the same way.
    let long = "x".repeat(201);
    assert!(
        store
            .create_image(upload(&long, &encoded(3)))
            .await
            .is_err()
    );
    assert_eq!(store.counts().await?, before);
    assert_eq!(
        db.counts().await?,
        (before.images, before.media),
        "seen from outside too"
    );
    Ok(())
}

async fn parents_and_children_are_linked(backend: Backend) -> anyhow::Result<()> {
    let (_db, store) = open(backend).await?;
    let parent = store.create_image(upload("parent", &encoded(1))).await?;
    let mut children = Vec::new();
    for (seed, filter) in [(2, Filter::Sepia), (3, Filter::Blur)] {
        let media = encoded(seed);
        let child = store
            .create_image(NewImage {
                name: "child",
                parent_id: Some(parent.id),
                filter: Some(filter),
                media: &media,
            })
            .await?;
        assert_eq!(child.parent_id, Some(parent.id));
        assert_eq!(child.filter.as_deref(), Some(filter.name()));
        children.push(child.id);
    }
    let listed: Vec<_> = store
        .children(parent.id, 10)
        .await?
        .iter()
        .map(|c| c.id)
        .collect();
    children.reverse();
    assert_eq!(listed, children);
    assert_eq!(
        store.children(parent.id, 1).await?.len(),
        1,
        "limit applies"
    );
    assert!(store.children(children[0], 10).await?.is_empty());
    Ok(())
}

async fn concurrent_likes_are_all_counted(backend: Backend) -> anyhow::Result<()> {
    let (_db, store) = open(backend).await?;
    let image = store.create_image(upload("popular", &encoded(1))).await?;
    let likes = (0..40).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.like(image.id).await })
    });
    let mut counts = Vec::new();
    for like in likes {
        counts.push(like.await??.expect("image exists"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<i64>>(),
        "each like saw a distinct new count"
    );
    assert_eq!(store.image(image.id).await?.map(|i| i.likes), Some(40));
    assert_eq!(store.like(image.id + 1).await?, None);
    Ok(())
}

async fn data_survives_a_reconnect(backend: Backend) -> anyhow::Result<()> {
    let (db, store) = open(backend).await?;
    let image = store.create_image(upload("durable", &encoded(1))).await?;
    store.like(image.id).await?;
    store.close().await;
    // Connecting again re-runs the migrations: they must be idempotent.
    let again = Store::connect(&db.url, 2).await?;
    assert_eq!(again.image(image.id).await?.map(|i| i.likes), Some(1));
    Ok(())
}
