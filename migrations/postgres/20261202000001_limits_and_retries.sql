-- Finalize and upload retries kept in the database, so that every instance
-- sees them and a row that keeps failing never starves the others: failed
-- attempts so far, when the next one is due, and why the last one failed.
ALTER TABLE records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN next_attempt_at TIMESTAMPTZ;
ALTER TABLE records ADD COLUMN last_error TEXT;
CREATE INDEX records_by_user_status ON records (user_id, status);

-- Open Socket.IO connections, for the per-user limit across instances. A row
-- lives while its instance heartbeats it; a killed instance's rows go stale.
CREATE TABLE connections (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_id  UUID NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX connections_by_user ON connections (user_id, last_seen_at);
CREATE INDEX connections_by_instance ON connections (instance_id);
