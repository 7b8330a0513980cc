-- Whether a client is connected to a live take (reported by its holder's
-- heartbeat with the bytes received so far), so lists can tell a take being
-- recorded from one waiting for the device that recorded it.
ALTER TABLE records ADD COLUMN client_connected BOOLEAN;
