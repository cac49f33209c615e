-- Every lease a run has run on, by id and by slug, so that listing runs by lease
-- (GET /v1/runs?leaseID=<id or slug>) also finds runs that have since moved to a replacement
-- lease, from an index. Kept in lockstep with crabbox-store-sqlite/migrations.
--
-- The keys of a run are the ids in its document's `leaseIDs` (which only grow) and its
-- current lease (a record from before `leaseIDs` has only that), and every `slug` the document
-- has had: a row is added when a key first appears and goes with the run.
-- `started_at` is the run's, so that one lease's runs are read newest first from the index.
CREATE TABLE run_leases (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    lease TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, lease)
);
CREATE INDEX run_leases_lease_started_at ON run_leases (lease, started_at, run_id);

-- Listing by lease reads run_leases now; runs.lease_id (the current lease) stays a column.
DROP INDEX runs_lease_id_started_at;

-- Every write of a run adds its new keys, computed by the store from the run it writes
-- (`crabbox_store::codec::run_lease_keys`), in the write's transaction; the runs stored before
-- this migration are read from their documents once, by the same rule. A document may hold NUL
-- characters (`\u0000`), which PostgreSQL's JSON functions refuse to read; every `\u0000` in
-- JSON text is an escape or follows an escaped backslash, so reading it as `\u0020` keeps the
-- text valid JSON and leaves lease ids and slugs (which hold no NUL) as they are.
INSERT INTO run_leases (run_id, lease, started_at)
SELECT runs.id, keys.lease, runs.started_at
FROM runs
CROSS JOIN LATERAL (
    SELECT replace(runs.doc, '\u0000', '\u0020')::json AS doc
) AS parsed
CROSS JOIN LATERAL (
    SELECT json_array_elements_text(
        CASE WHEN json_typeof(parsed.doc -> 'leaseIDs') = 'array'
             THEN parsed.doc -> 'leaseIDs' END)
    UNION ALL
    SELECT runs.lease_id
    UNION ALL
    SELECT parsed.doc ->> 'slug'
) AS keys (lease)
WHERE keys.lease <> ''
ON CONFLICT (run_id, lease) DO NOTHING;
