-- The first schema of the chat farm. Names are validated by the servers (1 to 32 characters of
-- A-Z a-z 0-9 _ . -); the checks here are a second line of defence.

CREATE TABLE users (
    name          TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,32}$'),
    -- An argon2id PHC string, with its own salt and parameters.
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    name       TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,32}$'),
    created_by TEXT NOT NULL REFERENCES users (name),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    joined_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX memberships_by_user ON memberships (user_name);

-- Messages that a recipient has not acknowledged yet, one row per recipient. A row is written
-- only when the message could not be handed over and acknowledged fast enough, and removed once
-- the recipient's client confirms it. The primary key makes a retried send a no-op.
CREATE TABLE inbox (
    recipient  TEXT NOT NULL,
    msg_id     UUID NOT NULL,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    sender     TEXT NOT NULL,
    -- NULL for a direct message.
    group_name TEXT,
    body       TEXT NOT NULL,
    -- When the server accepted it, in milliseconds since the Unix epoch.
    sent_at_ms BIGINT NOT NULL,
    PRIMARY KEY (recipient, msg_id)
);
CREATE INDEX inbox_oldest_first ON inbox (recipient, seq);

-- One row per chat server that ever started. Servers heartbeat here; a stale heartbeat means down.
CREATE TABLE server_info (
    name           TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    client_port    INTEGER NOT NULL,
    server_port    INTEGER NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- False once the server has shut down cleanly.
    alive          BOOLEAN NOT NULL DEFAULT true
);
