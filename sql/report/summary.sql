-- Users in and out of the snapshot, for the report's headline.
SELECT count(*) FILTER (WHERE included) AS included,
       count(*) FILTER (WHERE NOT included) AS excluded
FROM sync.snapshot_users
WHERE tenant = :tenant
