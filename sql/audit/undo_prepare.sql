-- What an undo of run :undo_of sets, per app row: `target` (column -> the value before that
-- run; a user it created is deactivated, a group it created removed) and `cur` (the same
-- columns as they are now, the undo's own `before`). Statements end with `;` at line end.
DROP TABLE IF EXISTS pg_temp.sp_undo_users;
CREATE TEMP TABLE sp_undo_users ON COMMIT DROP AS
WITH per_user AS (
    SELECT c.user_id,
           bool_or(c.entity = 'user' AND c.action = 'create') AS created,
           coalesce(jsonb_object_agg(b.key, b.value) FILTER (
               WHERE b.key IN ('email', 'display_name', 'first_name', 'last_name', 'job_title',
                               'department', 'external_id', 'source', 'is_active',
                               'deactivated_at', 'manager_id')), '{}') AS restore
    FROM sync.changes c
    LEFT JOIN LATERAL jsonb_each(c.before) b ON true
    WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity IN ('user', 'manager')
    GROUP BY c.user_id
),
targets AS (
    SELECT user_id, created,
           restore || CASE WHEN created
                           THEN jsonb_build_object('is_active', false, 'deactivated_at', now())
                           ELSE '{}' END AS target
    FROM per_user
)
SELECT t.user_id, t.created, t.target,
       (SELECT jsonb_object_agg(k, to_jsonb(u) -> k) FROM jsonb_object_keys(t.target) k) AS cur
FROM targets t
JOIN app.users u ON u.tenant = :tenant AND u.id = t.user_id;
DROP TABLE IF EXISTS pg_temp.sp_undo_groups;
CREATE TEMP TABLE sp_undo_groups ON COMMIT DROP AS
WITH per_group AS (
    SELECT c.group_id,
           bool_or(c.action = 'create') AS created,
           coalesce(jsonb_object_agg(b.key, b.value) FILTER (
               WHERE b.key IN ('name', 'removed_at')), '{}') AS restore
    FROM sync.changes c
    LEFT JOIN LATERAL jsonb_each(c.before) b ON true
    WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'group'
    GROUP BY c.group_id
),
targets AS (
    SELECT group_id, created,
           restore || CASE WHEN created THEN jsonb_build_object('removed_at', now())
                           ELSE '{}' END AS target
    FROM per_group
)
SELECT t.group_id, t.created, t.target,
       (SELECT jsonb_object_agg(k, to_jsonb(g) -> k) FROM jsonb_object_keys(t.target) k) AS cur
FROM targets t
JOIN app.groups g ON g.tenant = :tenant AND g.id = t.group_id
