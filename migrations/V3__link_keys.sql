-- The public half of each server process's link key (64 hex digits), made fresh at every
-- start: a peer's link must present the key of its row.
ALTER TABLE server_info ADD COLUMN link_key TEXT;
