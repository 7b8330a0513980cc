-- Transcripts: one row per recording, both the job (queued, running, failed,
-- with its attempts and a due time kept here, like finalize retries) and its
-- result (ready). Deleting a recording or its user deletes its transcript.
CREATE TABLE transcripts (
    -- The full-text index's row id (an alias of rowid, so it never changes).
    id          INTEGER PRIMARY KEY,
    record_id   BLOB NOT NULL UNIQUE REFERENCES records (id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- 'u' and the owner's id in hex: a token of the full-text index, so a
    -- search reads only its user's rows.
    owner       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    -- Attempts claimed so far (a claim counts, so a job that kills its
    -- worker or its server every time still ends as failed).
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- queued: not before this (NULL: at once); running: the claim's lease
    -- ends then unless its instance renews it.
    due_at      TEXT,
    claimed_by  BLOB,
    progress    REAL,
    last_error  TEXT,
    model       TEXT,
    language    TEXT,
    -- The transcript as served (JSON of audiobook_wire::Transcript).
    segments    TEXT,
    -- Its words separated by single spaces, and the start of each word in
    -- ms (u32 little-endian): what search matches and where it jumps to.
    text        TEXT,
    word_ms     BLOB,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX transcripts_due ON transcripts (status, due_at) WHERE status IN ('queued', 'running');
CREATE INDEX transcripts_by_user ON transcripts (user_id);

-- Full-text search (FTS5), kept in step with the table by triggers. No
-- stemming and no accent folding, like PostgreSQL's 'simple' configuration.
CREATE VIRTUAL TABLE transcripts_fts USING fts5(
    text, owner, content = 'transcripts', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER transcripts_fts_insert AFTER INSERT ON transcripts BEGIN
    INSERT INTO transcripts_fts (rowid, text, owner) VALUES (new.id, new.text, new.owner);
END;
CREATE TRIGGER transcripts_fts_delete AFTER DELETE ON transcripts BEGIN
    INSERT INTO transcripts_fts (transcripts_fts, rowid, text, owner) VALUES ('delete', old.id, old.text, old.owner);
END;
CREATE TRIGGER transcripts_fts_update AFTER UPDATE OF text ON transcripts BEGIN
    INSERT INTO transcripts_fts (transcripts_fts, rowid, text, owner) VALUES ('delete', old.id, old.text, old.owner);
    INSERT INTO transcripts_fts (rowid, text, owner) VALUES (new.id, new.text, new.owner);
END;

-- A take that becomes ready gets a job, in the same statement, while an
-- instance with transcription on has said so (settings 'transcription').
CREATE TRIGGER records_ready_queue_transcript AFTER UPDATE OF status ON records
WHEN new.status = 'ready' AND old.status <> 'ready'
    AND EXISTS (SELECT 1 FROM settings WHERE key = 'transcription' AND value = 'on')
BEGIN
    INSERT OR IGNORE INTO transcripts (record_id, user_id, owner, status, created_at, updated_at)
    VALUES (new.id, new.user_id, 'u' || lower(hex(new.user_id)), 'queued', new.updated_at, new.updated_at);
END;

-- Whether a share link shows the transcript too (the owner's choice).
ALTER TABLE records ADD COLUMN share_transcript BOOLEAN NOT NULL DEFAULT FALSE;
