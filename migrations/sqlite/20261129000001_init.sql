-- Users and their recordings. Names are limited in characters, not bytes
-- (SQLite's length() counts characters of TEXT).
CREATE TABLE users (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 20),
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE records (
    id             BLOB PRIMARY KEY,
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    storage_key    TEXT,
    mime_type      TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL DEFAULT 0,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL CHECK (status IN ('recording', 'finalizing', 'pending', 'ready', 'interrupted')),
    outcome        TEXT CHECK (outcome IN ('ready', 'interrupted')),
    owner_instance BLOB,
    last_seen_at   TEXT NOT NULL,
    peaks          BLOB,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE INDEX records_by_user_newest ON records (user_id, created_at DESC, id DESC);
CREATE INDEX records_unfinished ON records (status, last_seen_at) WHERE status IN ('recording', 'finalizing', 'pending');

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
