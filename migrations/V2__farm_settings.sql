-- Settings that every server of the farm must agree on: exactly one row.
CREATE TABLE farm (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Positions per server on the ring (the ring's V). Servers read it with every registry
    -- refresh and hand it to clients with the ring, so a change applies farm-wide within seconds
    -- (and moves users' homes: change it only when the farm is quiet).
    vnodes    INTEGER NOT NULL DEFAULT 64 CHECK (vnodes BETWEEN 1 AND 1024)
);
INSERT INTO farm DEFAULT VALUES;

-- Where other servers dial, when that host differs from the clients' one (NULL: the same).
ALTER TABLE server_info ADD COLUMN peer_host TEXT;
