-- Who writes app.* for the rest of this transaction: 'sync' (the apply) or '' (anyone else).
-- Migration 015's triggers do not record the sync's own writes as changes to diff again.
SELECT set_config('sync_pipeline.writer', :writer, true)
