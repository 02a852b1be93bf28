-- A user's revocation epoch: every resume ticket names the epoch it was issued at, and is valid
-- only while the user's epoch is still that one. `logout` and a password change add one, which
-- revokes every ticket the user holds, on every device.
ALTER TABLE users ADD COLUMN ticket_epoch BIGINT NOT NULL DEFAULT 0;
