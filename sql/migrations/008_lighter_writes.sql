-- Lighter writes for a large first load (a 100k-user tenant plans and records ~1.4 M changes).
-- Idempotent.

-- The counts of the diff a run planned (sync_diff), so that the apply of the same run applies
-- that very diff — the one the blocking checks passed — instead of computing it again. Null
-- until a diff is computed for the run.
ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS planned jsonb;

-- sync.diffs is a plan, recomputed from the snapshot and app.* whenever it is missing, so it
-- is not worth WAL: unlogged, it costs a third of the time to write. A crash empties it; the
-- apply then finds its run's rows gone and computes the diff again (diff.planned_diff). The
-- foreign key to sync.runs was checked once per row (3.7 s for a million memberships) for a
-- run created in the same transaction; the primary key (with a text key) and diffs_tenant
-- were not used by any query: diffs_step serves every read.
ALTER TABLE sync.diffs DROP CONSTRAINT IF EXISTS diffs_run_id_fkey;
ALTER TABLE sync.diffs DROP CONSTRAINT IF EXISTS diffs_pkey;
DROP INDEX IF EXISTS sync.diffs_tenant;
ALTER TABLE sync.diffs SET UNLOGGED;

-- The audit stays logged (an undo needs it); its run_id is written by the run's own
-- transaction, so the per-row foreign-key check bought nothing for its cost.
ALTER TABLE sync.changes DROP CONSTRAINT IF EXISTS changes_run_id_fkey;
