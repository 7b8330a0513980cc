-- Users and their recordings. Names are limited in characters, not bytes.
CREATE TABLE users (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 20),
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE records (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50),
    -- Key of the audio object once stored; NULL while the take is live.
    storage_key    TEXT,
    mime_type      TEXT NOT NULL,
    size_bytes     BIGINT NOT NULL DEFAULT 0,
    duration_ms    BIGINT NOT NULL DEFAULT 0,
    -- recording: live, chunks arrive in the spool; finalizing: being stored;
    -- pending: safe in the spool, upload not confirmed; ready / interrupted: stored.
    status         TEXT NOT NULL CHECK (status IN ('recording', 'finalizing', 'pending', 'ready', 'interrupted')),
    -- What a pending record becomes once its upload is confirmed.
    outcome        TEXT CHECK (outcome IN ('ready', 'interrupted')),
    -- The server instance holding the live take, and when it last said so.
    owner_instance UUID,
    last_seen_at   TIMESTAMPTZ NOT NULL,
    peaks          BYTEA,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- GET /records/:id: a user's records, newest first.
CREATE INDEX records_by_user_newest ON records (user_id, created_at DESC, id DESC);
-- The reaper and the upload retry look only at unfinished records.
CREATE INDEX records_unfinished ON records (status, last_seen_at) WHERE status IN ('recording', 'finalizing', 'pending');

-- Server-wide settings shared by every instance (for example the link secret).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
