-- The rows where the incremental snapshot (sp_verify_*, verify_copy.sql) and the full rebuild
-- disagree: which table, which key, and on which side the row stood (a changed row is on
-- both). At most :limit of them.
WITH full_users AS (
    SELECT graph_id, included, reason, reasons, email, display_name, first_name, last_name,
           job_title, department, manager_graph_id, manager_note
    FROM sync.snapshot_users WHERE tenant = :tenant
), full_groups AS (
    SELECT graph_id, included, reason, name, group_kind, mapped_to
    FROM sync.snapshot_groups WHERE tenant = :tenant
), full_memberships AS (
    SELECT group_graph_id, user_graph_id
    FROM sync.snapshot_memberships WHERE tenant = :tenant
), differing AS (
    SELECT 'snapshot_users' AS tbl, graph_id AS key, 'incremental' AS side
    FROM (SELECT * FROM sp_verify_users EXCEPT SELECT * FROM full_users) x
    UNION ALL
    SELECT 'snapshot_users', graph_id, 'full'
    FROM (SELECT * FROM full_users EXCEPT SELECT * FROM sp_verify_users) x
    UNION ALL
    SELECT 'snapshot_groups', graph_id, 'incremental'
    FROM (SELECT * FROM sp_verify_groups EXCEPT SELECT * FROM full_groups) x
    UNION ALL
    SELECT 'snapshot_groups', graph_id, 'full'
    FROM (SELECT * FROM full_groups EXCEPT SELECT * FROM sp_verify_groups) x
    UNION ALL
    SELECT 'snapshot_memberships', group_graph_id || '/' || user_graph_id, 'incremental'
    FROM (SELECT * FROM sp_verify_memberships EXCEPT SELECT * FROM full_memberships) x
    UNION ALL
    SELECT 'snapshot_memberships', group_graph_id || '/' || user_graph_id, 'full'
    FROM (SELECT * FROM full_memberships EXCEPT SELECT * FROM sp_verify_memberships) x
)
SELECT tbl, key, side, count(*) OVER () AS total
FROM differing
ORDER BY tbl, key, side
LIMIT :limit
