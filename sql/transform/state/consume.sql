-- The tenant's change set, taken out of sync.touched into sp_touched (this transaction).
-- Statements end with a semicolon at the end of a line. First, the transaction is marked as
-- the transform's: its snapshot writes leave the snapshot state trusted (migration 017).
SELECT set_config('sync_pipeline.writer', 'transform', true);
DROP TABLE IF EXISTS pg_temp.sp_touched;
CREATE TEMP TABLE sp_touched (kind text NOT NULL, id text NOT NULL) ON COMMIT DROP;
WITH taken AS (
    DELETE FROM sync.touched t WHERE t.tenant = :tenant RETURNING t.kind, t.id
)
INSERT INTO sp_touched (kind, id) SELECT kind, id FROM taken;
ANALYZE sp_touched
