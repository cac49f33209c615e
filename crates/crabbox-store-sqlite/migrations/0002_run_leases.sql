-- Every lease a run has run on, by id and by slug, so that listing runs by lease
-- (GET /v1/runs?leaseID=<id or slug>) also finds runs that have since moved to a replacement
-- lease, from an index. Kept in lockstep with crabbox-store-postgres/migrations.
--
-- The keys of a run are the ids in its document's `leaseIDs` (which only grow) and its
-- current lease (a record from before `leaseIDs` has only that), and every `slug` the document
-- has had: a row is added when a key first appears and goes with the run (ON DELETE CASCADE).
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

-- Every write of a run adds its new keys (computed by the store from the run it writes:
-- `crabbox_store::codec::run_lease_keys`) through `run_writes`, which gains a `lease_keys`
-- column: a JSON array of strings. The run document is not parsed again for it (a finished
-- run's document carries its log preview and telemetry: re-reading it on every write cost a
-- tenth of the coordinator's lease cycles).
DROP VIEW run_writes;
CREATE VIEW run_writes (
    id, lease_id, owner, org, state, started_at, ended_at, doc, expected, events, log, log_cuts,
    lease_keys
) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER run_writes_insert INSTEAD OF INSERT ON run_writes
WHEN NEW.expected IS NULL
BEGIN
    INSERT INTO runs (id, lease_id, owner, org, state, started_at, ended_at, doc, version)
    VALUES (NEW.id, NEW.lease_id, NEW.owner, NEW.org, NEW.state, NEW.started_at, NEW.ended_at,
            NEW.doc, 1);
    INSERT INTO run_events (run_id, seq, doc)
    SELECT NEW.id, e.value ->> '$[0]', e.value ->> '$[1]' FROM json_each(NEW.events) AS e;
    INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
    SELECT NEW.id, k.value, NEW.started_at FROM json_each(NEW.lease_keys) AS k;
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
    INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
    SELECT NEW.id, k.value, NEW.started_at FROM json_each(NEW.lease_keys) AS k;
END;

-- The runs stored before this migration, by the same rule, read from their documents once.
INSERT OR IGNORE INTO run_leases (run_id, lease, started_at)
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
