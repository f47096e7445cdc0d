-- Image bytes, content-addressed: one row per distinct file, shared by every image that uses it.
CREATE TABLE media (
    sha256       TEXT PRIMARY KEY NOT NULL CHECK (length(sha256) = 64),
    content_type TEXT NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png')),
    width        BIGINT NOT NULL CHECK (width > 0),
    height       BIGINT NOT NULL CHECK (height > 0),
    bytes        BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);

-- AUTOINCREMENT: ids are never reused, so "newest first" by id is stable for cursors.
CREATE TABLE images (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id    BIGINT REFERENCES images (id),
    filter       TEXT,
    media_sha256 TEXT NOT NULL REFERENCES media (sha256),
    likes        BIGINT NOT NULL DEFAULT 0 CHECK (likes >= 0),
    created_at   BIGINT NOT NULL
);

CREATE INDEX images_parent_id ON images (parent_id);
CREATE INDEX images_media_sha256 ON images (media_sha256);
