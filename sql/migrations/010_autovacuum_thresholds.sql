-- Autovacuum thresholds for the tables every sync rewrites a little of. Idempotent.
--
-- The defaults wait for a fifth of a table's rows to be dead or newly inserted. A 100k-user
-- tenant's daily sync changes ~0.2 per cent of its 1.4 M memberships, scattered over ~15 per cent of the
-- pages, so a fifth takes months. Meanwhile the visibility map goes stale: the checks' and
-- the diff's index-only scans visit the heap again, and six daily syncs without a VACUUM
-- grew from 17.9 to 22.0 s (benchmarks/sync.py). At half a percent, autovacuum comes every
-- second day or so, in the background. Where autovacuum is off, the sync vacuums these
-- tables itself (db.vacuum_if_needed).
ALTER TABLE staging.users SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE staging.groups SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE staging.group_members SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE staging.user_licences SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE staging.user_managers SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE sync.snapshot_users SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE sync.snapshot_groups SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
ALTER TABLE sync.snapshot_memberships SET (autovacuum_vacuum_scale_factor = 0.005, autovacuum_vacuum_insert_scale_factor = 0.005);
