-- Diagnosis state per run, findings, webhooks and the alert outbox.
-- Append-only: never edit a migration that has shipped; add a new one.
-- Floats that may be "unset" are 0 rather than NULL where code binds them.

-- Which data version of a run was last diagnosed, and who holds the lease
-- to diagnose it now (one replica at a time).
CREATE TABLE diagnosis_state (
    run_id            TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    diagnosed_version BIGINT NOT NULL DEFAULT 0,
    diagnosed_at      DOUBLE PRECISION NOT NULL DEFAULT 0,
    notes             TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    lease_owner       TEXT,
    lease_until       DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- One row per run and kind; resolved, never deleted, when it stops holding.
CREATE TABLE findings (
    id            INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    severity      TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    severity_rank BIGINT NOT NULL,                  -- 0 info … 3 critical
    onset_step    BIGINT,
    title         TEXT NOT NULL,
    evidence      TEXT NOT NULL,                    -- JSON
    cause         TEXT NOT NULL,
    fixes         TEXT NOT NULL,                    -- JSON array of strings
    first_seen_at DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    resolved_at   DOUBLE PRECISION NOT NULL DEFAULT 0,
    alert_epoch   BIGINT NOT NULL DEFAULT 0,        -- transitions into warning-or-worse
    UNIQUE (run_id, kind)
);
CREATE INDEX findings_by_status ON findings (status, severity_rank);

CREATE TABLE webhooks (
    id           INTEGER PRIMARY KEY,
    url          TEXT NOT NULL,
    format       TEXT NOT NULL CHECK (format IN ('slack', 'discord', 'json')),
    min_severity TEXT NOT NULL CHECK (min_severity IN ('info', 'warning', 'error', 'critical')),
    min_rank     BIGINT NOT NULL,
    secret       TEXT,
    project      TEXT,                              -- NULL: every project
    created_at   DOUBLE PRECISION NOT NULL
);

-- One row per (webhook, run, kind, transition); the sender delivers it.
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    delivery_id     TEXT NOT NULL UNIQUE,           -- idempotency id, in the payload
    webhook_id      BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    epoch           BIGINT NOT NULL,
    body            TEXT NOT NULL,                  -- the exact body to POST
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until     DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    delivered_at    DOUBLE PRECISION NOT NULL DEFAULT 0,
    UNIQUE (webhook_id, run_id, kind, epoch)
);
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
