-- Every lease a run has run on, by id and by slug, so that listing runs by lease
-- (GET /v1/runs?leaseID=<id or slug>) also finds runs that have since moved to a replacement
-- lease, from an index. Kept in lockstep with crabbox-store-postgres/migrations.
--
-- The keys of a run are the ids in its document's `leaseIDs` (which only grow) and its
-- current lease (a record from before `leaseIDs` has only that), and every `slug` the document
-- has had: a row is added when a key first appears and goes with the run.
-- `started_at` is the run's, so that one lease's runs are read newest first from the index.
-- WITHOUT ROWID: the key is the table, so an entry costs two B-tree writes, not three.
CREATE TABLE run_leases (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    lease TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, lease)
) WITHOUT ROWID;
CREATE INDEX run_leases_lease_started_at ON run_leases (lease, started_at, run_id);

-- Listing by lease reads run_leases now; runs.lease_id (the current lease) stays a column.
DROP INDEX runs_lease_id_started_at;

-- The keys of each run as its document states them now.
CREATE VIEW run_lease_keys (run_id, lease, started_at) AS
    SELECT runs.id, ids.value, runs.started_at
    FROM runs, json_each(runs.doc, '$.leaseIDs') AS ids
    WHERE ids.type = 'text' AND ids.value <> ''
    UNION ALL
    SELECT runs.id, runs.lease_id, runs.started_at
    FROM runs
    WHERE runs.lease_id <> ''
    UNION ALL
    SELECT runs.id, runs.doc ->> '$.slug', runs.started_at
    FROM runs
    WHERE (runs.doc ->> '$.slug') <> '';

CREATE TRIGGER run_leases_insert AFTER INSERT ON runs
BEGIN
    INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
    SELECT run_id, lease, started_at FROM run_lease_keys WHERE run_id = NEW.id;
END;

CREATE TRIGGER run_leases_update AFTER UPDATE OF doc ON runs
BEGIN
    INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
    SELECT run_id, lease, started_at FROM run_lease_keys WHERE run_id = NEW.id;
END;

INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
SELECT run_id, lease, started_at FROM run_lease_keys;
