-- Share links: a random token (at least 128 bits, URL-safe) that lets anyone
-- holding it play one recording. Kept in plain text (see db/library.rs):
-- NULL when the recording is not shared; NULLs do not collide in the index.
ALTER TABLE records ADD COLUMN share_token TEXT;
CREATE UNIQUE INDEX records_by_share_token ON records (share_token);
