-- Transcripts: one row per recording, both the job (queued, running, failed,
-- with its attempts and a due time kept here, like finalize retries) and its
-- result (ready). Deleting a recording or its user deletes its transcript.
CREATE TABLE transcripts (
    record_id   UUID PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    -- Attempts claimed so far (a claim counts, so a job that kills its
    -- worker or its server every time still ends as failed).
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- queued: not before this (NULL: at once); running: the claim's lease
    -- ends then unless its instance renews it.
    due_at      TIMESTAMPTZ,
    claimed_by  UUID,
    progress    DOUBLE PRECISION,
    last_error  TEXT,
    model       TEXT,
    language    TEXT,
    -- The transcript as served (JSON of audiobook_wire::Transcript).
    segments    TEXT,
    -- Its words separated by single spaces, and the start of each word in
    -- ms (u32 little-endian): what search matches and where it jumps to.
    text        TEXT,
    word_ms     BYTEA,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- Full-text search: no stemming and no accent folding ('simple'), like
    -- the SQLite index. Made from the text's terms as the server splits
    -- them (letter and digit runs, lowercased), so both backends and the
    -- server agree on what a word is; a tsvector must stay under 1 MB, so
    -- at most the first million characters of terms are indexed.
    search      TSVECTOR
);
CREATE INDEX transcripts_due ON transcripts (status, due_at) WHERE status IN ('queued', 'running');
CREATE INDEX transcripts_by_user ON transcripts (user_id);
CREATE INDEX transcripts_search ON transcripts USING GIN (search);

-- A take that becomes ready gets a job, in the same statement, while an
-- instance with transcription on has said so (settings 'transcription').
CREATE FUNCTION queue_transcript() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'ready' AND OLD.status IS DISTINCT FROM 'ready'
        AND EXISTS (SELECT 1 FROM settings WHERE key = 'transcription' AND value = 'on') THEN
        INSERT INTO transcripts (record_id, user_id, status, created_at, updated_at)
        VALUES (NEW.id, NEW.user_id, 'queued', NEW.updated_at, NEW.updated_at)
        ON CONFLICT (record_id) DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER records_ready_queue_transcript AFTER UPDATE OF status ON records
    FOR EACH ROW EXECUTE FUNCTION queue_transcript();

-- Whether a share link shows the transcript too (the owner's choice).
ALTER TABLE records ADD COLUMN share_transcript BOOLEAN NOT NULL DEFAULT FALSE;
