-- The coordinator's records. Kept in lockstep with crabbox-store-postgres/migrations: the same
-- file names, tables, columns and indexes; only the dialect differs.
--
-- Every record is its full JSON document (`doc`) plus the columns the coordinator queries by,
-- and a `version` that every write compares and increments. Times are Unix milliseconds.

CREATE TABLE leases (
    id TEXT NOT NULL PRIMARY KEY,
    slug TEXT NOT NULL,
    owner TEXT NOT NULL,
    org TEXT NOT NULL,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    registered BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    -- First instant of the UTC month of created_at: terminal spend is kept per month.
    created_month BIGINT NOT NULL,
    ended_at BIGINT,
    -- When the reconciler must next look at the lease; NULL when nothing is pending.
    next_check_at BIGINT,
    max_estimated_usd DOUBLE PRECISION NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX leases_next_check_at ON leases (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX leases_owner_org_state ON leases (owner, org, state);
CREATE INDEX leases_state_created_at ON leases (state, created_at);
CREATE INDEX leases_created_at ON leases (created_at, id);
CREATE INDEX leases_live_slug ON leases (slug) WHERE state IN ('provisioning', 'active');
CREATE INDEX leases_ended_at ON leases (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE create_attempts (
    requested_lease_id TEXT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE runs (
    id TEXT NOT NULL PRIMARY KEY,
    lease_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    org TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    -- When a finished run ended (endedAt, else lastEventAt, else startedAt); NULL while running.
    ended_at BIGINT,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX runs_lease_id_started_at ON runs (lease_id, started_at, id);
CREATE INDEX runs_owner_org_started_at ON runs (owner, org, started_at, id);
CREATE INDEX runs_started_at ON runs (started_at, id);
CREATE INDEX runs_ended_at ON runs (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE run_events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- A run's log in pieces of at most 65,536 bytes of UTF-8 cut on character boundaries; the
-- log is the pieces concatenated in chunk order. Bytes, because logs may hold NUL.
CREATE TABLE run_logs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    chunk BIGINT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (run_id, chunk)
);

CREATE TABLE kv (
    key TEXT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);

-- Aggregates kept by triggers so that /metrics and admission cost the same however many
-- leases are stored: leases per state, and the spend (max_estimated_usd in microdollars) of
-- terminal managed leases per creation month, owner and org.
CREATE TABLE lease_state_counts (
    state TEXT NOT NULL PRIMARY KEY,
    leases BIGINT NOT NULL
);
INSERT INTO lease_state_counts (state, leases)
VALUES ('provisioning', 0), ('active', 0), ('released', 0), ('expired', 0), ('failed', 0);

CREATE TABLE lease_month_spend (
    month BIGINT NOT NULL,
    owner TEXT NOT NULL,
    org TEXT NOT NULL,
    micro_usd BIGINT NOT NULL,
    PRIMARY KEY (month, owner, org)
);

CREATE TRIGGER leases_count_insert AFTER INSERT ON leases
BEGIN
    UPDATE lease_state_counts SET leases = leases + 1 WHERE state = NEW.state;
END;

CREATE TRIGGER leases_count_update AFTER UPDATE OF state ON leases
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE lease_state_counts SET leases = leases - 1 WHERE state = OLD.state;
    UPDATE lease_state_counts SET leases = leases + 1 WHERE state = NEW.state;
END;

CREATE TRIGGER leases_count_delete AFTER DELETE ON leases
BEGIN
    UPDATE lease_state_counts SET leases = leases - 1 WHERE state = OLD.state;
END;

CREATE TRIGGER leases_spend_insert AFTER INSERT ON leases
WHEN NEW.state IN ('released', 'expired', 'failed') AND NOT NEW.registered
BEGIN
    INSERT INTO lease_month_spend (month, owner, org, micro_usd)
    VALUES (NEW.created_month, NEW.owner, NEW.org,
            CAST(round(NEW.max_estimated_usd * 1000000) AS INTEGER))
    ON CONFLICT (month, owner, org) DO UPDATE SET micro_usd = micro_usd + excluded.micro_usd;
END;

CREATE TRIGGER leases_spend_update AFTER UPDATE ON leases
WHEN (OLD.state IN ('released', 'expired', 'failed') AND NOT OLD.registered)
  OR (NEW.state IN ('released', 'expired', 'failed') AND NOT NEW.registered)
BEGIN
    UPDATE lease_month_spend
    SET micro_usd = micro_usd - CAST(round(OLD.max_estimated_usd * 1000000) AS INTEGER)
    WHERE OLD.state IN ('released', 'expired', 'failed') AND NOT OLD.registered
      AND month = OLD.created_month AND owner = OLD.owner AND org = OLD.org;
    INSERT INTO lease_month_spend (month, owner, org, micro_usd)
    SELECT NEW.created_month, NEW.owner, NEW.org,
           CAST(round(NEW.max_estimated_usd * 1000000) AS INTEGER)
    WHERE NEW.state IN ('released', 'expired', 'failed') AND NOT NEW.registered
    ON CONFLICT (month, owner, org) DO UPDATE SET micro_usd = micro_usd + excluded.micro_usd;
END;

CREATE TRIGGER leases_spend_delete AFTER DELETE ON leases
WHEN OLD.state IN ('released', 'expired', 'failed') AND NOT OLD.registered
BEGIN
    UPDATE lease_month_spend
    SET micro_usd = micro_usd - CAST(round(OLD.max_estimated_usd * 1000000) AS INTEGER)
    WHERE month = OLD.created_month AND owner = OLD.owner AND org = OLD.org;
END;

-- Run writes in one statement (SQLite only: each statement is a round trip to the
-- connection's thread, so a run write as one transaction of several statements would cost
-- several). Inserting a row into this view runs the trigger for it, which writes the run, its
-- new events and its log; any failing step undoes the whole statement.
--   expected: NULL inserts a new run at version 1; otherwise the version to compare and swap.
--   events:   JSON array of [seq, document text] to insert (NULL or [] for none).
--   log:      the new log as bytes (NULL keeps the stored log); log_cuts: JSON array of
--             [byte offset, byte length] pieces of it.
CREATE VIEW run_writes (
    id, lease_id, owner, org, state, started_at, ended_at, doc, expected, events, log, log_cuts
) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER run_writes_insert INSTEAD OF INSERT ON run_writes
WHEN NEW.expected IS NULL
BEGIN
    INSERT INTO runs (id, lease_id, owner, org, state, started_at, ended_at, doc, version)
    VALUES (NEW.id, NEW.lease_id, NEW.owner, NEW.org, NEW.state, NEW.started_at, NEW.ended_at,
            NEW.doc, 1);
    INSERT INTO run_events (run_id, seq, doc)
    SELECT NEW.id, e.value ->> '$[0]', e.value ->> '$[1]' FROM json_each(NEW.events) AS e;
END;

CREATE TRIGGER run_writes_update INSTEAD OF INSERT ON run_writes
WHEN NEW.expected IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'crabbox: run not found')
    WHERE NOT EXISTS (SELECT 1 FROM runs WHERE id = NEW.id);
    SELECT RAISE(ABORT, 'crabbox: run version moved')
    WHERE NOT EXISTS (SELECT 1 FROM runs WHERE id = NEW.id AND version = NEW.expected);
    UPDATE runs SET lease_id = NEW.lease_id, owner = NEW.owner, org = NEW.org,
        state = NEW.state, started_at = NEW.started_at, ended_at = NEW.ended_at,
        doc = NEW.doc, version = version + 1
    WHERE id = NEW.id;
    INSERT INTO run_events (run_id, seq, doc)
    SELECT NEW.id, e.value ->> '$[0]', e.value ->> '$[1]' FROM json_each(NEW.events) AS e;
    DELETE FROM run_logs WHERE run_id = NEW.id AND NEW.log IS NOT NULL;
    INSERT INTO run_logs (run_id, chunk, body)
    SELECT NEW.id, c.key, substr(NEW.log, (c.value ->> '$[0]') + 1, c.value ->> '$[1]')
    FROM json_each(NEW.log_cuts) AS c
    WHERE NEW.log IS NOT NULL;
END;
