-- The groups the snapshot imports: the name the app will show, and the mapping target if any.
SELECT graph_id, name, mapped_to
FROM sync.snapshot_groups
WHERE tenant = :tenant AND included
