-- The newest migration applied: a schema change rebuilds every snapshot in full.
SELECT max(filename) FROM sync.schema_migrations
