-- The diff rows where the incremental diff (sp_verify_diffs) and the whole one disagree, and
-- on which side each stood (a changed row is on both). At most :limit of them.
WITH whole AS (
    SELECT entity, action, key, label, app_id, before, after,
           group_app_id, group_external_id, user_app_id, user_external_id
    FROM sync.diffs WHERE tenant = :tenant AND run_id = :run_id
), differing AS (
    SELECT entity || ' ' || action AS change, key, 'incremental' AS side
    FROM (SELECT * FROM sp_verify_diffs EXCEPT SELECT * FROM whole) x
    UNION ALL
    SELECT entity || ' ' || action, key, 'whole'
    FROM (SELECT * FROM whole EXCEPT SELECT * FROM sp_verify_diffs) x
)
SELECT change, key, side, count(*) OVER () AS total
FROM differing
ORDER BY change, key, side
LIMIT :limit
