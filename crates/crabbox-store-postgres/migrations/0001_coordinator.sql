-- The coordinator's records. Kept in lockstep with crabbox-store-sqlite/migrations: the same
-- file names, tables, columns and indexes; only the dialect differs. Runs with search_path set
-- to the coordinator's schema, so every object lands there.
--
-- Every record is its full JSON document (`doc`, TEXT: JSONB cannot hold NUL) plus the
-- columns the coordinator queries by, and a `version` that every write compares and
-- increments. Times are Unix milliseconds.

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
    body BYTEA NOT NULL,
    PRIMARY KEY (run_id, chunk)
);

-- Byte-wise key order (as SQLite's), so prefix listing is a plain index range.
CREATE TABLE kv (
    key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
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

-- One function for every change; SET search_path pins the tables it touches to this schema
-- whatever the calling session's path is.
CREATE FUNCTION leases_track() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    -- OLD exists only for UPDATE and DELETE, NEW only for INSERT and UPDATE.
    IF TG_OP <> 'INSERT' THEN
        IF TG_OP = 'DELETE' THEN
            UPDATE lease_state_counts SET leases = leases - 1 WHERE state = OLD.state;
        ELSIF OLD.state <> NEW.state THEN
            UPDATE lease_state_counts SET leases = leases - 1 WHERE state = OLD.state;
        END IF;
        IF OLD.state IN ('released', 'expired', 'failed') AND NOT OLD.registered THEN
            UPDATE lease_month_spend
            SET micro_usd = micro_usd - round(OLD.max_estimated_usd * 1000000)::bigint
            WHERE month = OLD.created_month AND owner = OLD.owner AND org = OLD.org;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF TG_OP = 'INSERT' THEN
            UPDATE lease_state_counts SET leases = leases + 1 WHERE state = NEW.state;
        ELSIF OLD.state <> NEW.state THEN
            UPDATE lease_state_counts SET leases = leases + 1 WHERE state = NEW.state;
        END IF;
        IF NEW.state IN ('released', 'expired', 'failed') AND NOT NEW.registered THEN
            INSERT INTO lease_month_spend (month, owner, org, micro_usd)
            VALUES (NEW.created_month, NEW.owner, NEW.org,
                    round(NEW.max_estimated_usd * 1000000)::bigint)
            ON CONFLICT (month, owner, org)
            DO UPDATE SET micro_usd = lease_month_spend.micro_usd + excluded.micro_usd;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER leases_track_insert AFTER INSERT ON leases
FOR EACH ROW EXECUTE FUNCTION leases_track();

-- Heartbeats (live, same state) do not call the function at all.
CREATE TRIGGER leases_track_update AFTER UPDATE ON leases
FOR EACH ROW
WHEN (OLD.state <> NEW.state
      OR (OLD.state IN ('released', 'expired', 'failed') AND NOT OLD.registered)
      OR (NEW.state IN ('released', 'expired', 'failed') AND NOT NEW.registered))
EXECUTE FUNCTION leases_track();

CREATE TRIGGER leases_track_delete AFTER DELETE ON leases
FOR EACH ROW EXECUTE FUNCTION leases_track();
