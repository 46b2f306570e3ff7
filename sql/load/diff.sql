-- The changes that make app.* match the tenant's snapshot, written to sync.diffs for one run.
-- Users are matched by external_id (the Graph id); an unmatched snapshot user adopts an active
-- manual app user with the same address (case-insensitive) and no external_id. Only m365 rows
-- are ever deactivated or removed; memberships only with source 'm365'.
-- Incremental (:incremental, load/diff.py): only the users in sp_scope_u / sp_scope_a
-- (load/state/scope.sql) are diffed, and every other user is known to have no change;
-- groups are always diffed whole. The same statements either way, so the two cannot drift.
-- Statements end with a semicolon at the end of a line (rules.run_script).
SET LOCAL jit = off;  -- see transform/closure.sql
SET LOCAL work_mem = '256MB';
-- Incremental: a few thousand keys looked up by index, in tables hot in the cache (see
-- transform/incremental.sql); the whole diff keeps the planner's default.
SELECT set_config('random_page_cost', CASE WHEN CAST(:incremental AS boolean) THEN '1.1'
                  ELSE current_setting('random_page_cost') END, true);
DELETE FROM sync.diffs WHERE tenant = :tenant AND run_id = :run_id;
-- Only the tenant's last 10 runs keep their plans (`sync-pipeline report`'s CSV); what older
-- runs applied is in the audit (sync.changes), and their plans would only grow the table: a
-- first load of 100k users plans 1.4 M rows.
DELETE FROM sync.diffs
WHERE tenant = :tenant
  AND run_id < (SELECT min(r.id) FROM (SELECT id FROM sync.runs WHERE tenant = :tenant
                                       ORDER BY started_at DESC LIMIT 10) r);
-- Users: the snapshot's fields beside the app row's (o_*); the field-by-field documents
-- are built only for rows that differ (a resync of an unchanged directory builds none).
DROP TABLE IF EXISTS pg_temp.sp_du;
CREATE TEMP TABLE sp_du ON COMMIT DROP AS
SELECT
    s.graph_id, s.email, s.manager_graph_id,
    coalesce(x.id, a.id) AS app_id,
    CASE WHEN x.id IS NOT NULL AND x.is_active THEN 'update'
         WHEN x.id IS NOT NULL THEN 'reactivate'
         WHEN a.id IS NOT NULL THEN 'adopt'
         ELSE 'create' END AS action,
    coalesce(x.manager_id, a.manager_id) AS current_manager_id,
    s.display_name, s.first_name, s.last_name, s.job_title, s.department,
    coalesce(x.email, a.email) AS o_email,
    CASE WHEN x.id IS NULL THEN a.display_name ELSE x.display_name END AS o_display_name,
    CASE WHEN x.id IS NULL THEN a.first_name ELSE x.first_name END AS o_first_name,
    CASE WHEN x.id IS NULL THEN a.last_name ELSE x.last_name END AS o_last_name,
    CASE WHEN x.id IS NULL THEN a.job_title ELSE x.job_title END AS o_job_title,
    CASE WHEN x.id IS NULL THEN a.department ELSE x.department END AS o_department
FROM sync.snapshot_users s
LEFT JOIN app.users x ON x.tenant = :tenant AND x.external_id = s.graph_id
LEFT JOIN app.users a
  ON x.id IS NULL AND a.tenant = :tenant AND a.is_active AND a.source = 'manual'
 AND a.external_id IS NULL AND lower(a.email) = lower(s.email)
WHERE s.tenant = :tenant AND s.included
  AND (NOT CAST(:incremental AS boolean) OR s.graph_id IN (SELECT graph_id FROM sp_scope_u));
CREATE UNIQUE INDEX ON sp_du (graph_id);
CREATE INDEX ON sp_du (app_id);
ANALYZE sp_du (graph_id, app_id, manager_graph_id, action);
-- the adopted manual users are looked at too (their memberships)
INSERT INTO sp_scope_a (id)
SELECT d.app_id FROM sp_du d
WHERE CAST(:incremental AS boolean) AND d.app_id IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO sync.diffs (tenant, run_id, entity, action, key, label, app_id, before, after)
SELECT
    :tenant, :run_id, 'user', d.action, d.graph_id, d.email, d.app_id,
    CASE d.action
        WHEN 'create' THEN NULL
        WHEN 'adopt' THEN ch.before || jsonb_build_object('external_id', NULL, 'source', 'manual')
        WHEN 'reactivate' THEN ch.before || jsonb_build_object('is_active', false)
        ELSE ch.before END,
    CASE d.action
        WHEN 'create' THEN doc.new_doc || jsonb_build_object('external_id', d.graph_id)
        WHEN 'adopt' THEN ch.after || jsonb_build_object('external_id', d.graph_id, 'source', 'm365')
        WHEN 'reactivate' THEN ch.after || jsonb_build_object('is_active', true)
        ELSE ch.after END
FROM sp_du d
CROSS JOIN LATERAL (
    SELECT
        jsonb_build_object(
            'email', d.email, 'display_name', d.display_name, 'first_name', d.first_name,
            'last_name', d.last_name, 'job_title', d.job_title, 'department', d.department
        ) AS new_doc,
        CASE WHEN d.app_id IS NOT NULL THEN jsonb_build_object(
            'email', d.o_email, 'display_name', d.o_display_name, 'first_name', d.o_first_name,
            'last_name', d.o_last_name, 'job_title', d.o_job_title, 'department', d.o_department
        ) END AS old_doc
) doc
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(n.key, doc.old_doc -> n.key), '{}') AS before,
           coalesce(jsonb_object_agg(n.key, n.value), '{}') AS after
    FROM jsonb_each(doc.new_doc) n
    WHERE doc.old_doc IS NULL OR n.value IS DISTINCT FROM doc.old_doc -> n.key
) ch
WHERE (d.action <> 'update'
       OR (d.email, d.display_name, d.first_name, d.last_name, d.job_title, d.department)
          IS DISTINCT FROM
          (d.o_email, d.o_display_name, d.o_first_name, d.o_last_name, d.o_job_title,
           d.o_department))
  AND (d.action <> 'update' OR ch.after <> '{}');
INSERT INTO sync.diffs (tenant, run_id, entity, action, key, label, app_id, before, after)
SELECT :tenant, :run_id, 'user', 'deactivate', u.external_id, u.email, u.id,
       jsonb_build_object('is_active', true), jsonb_build_object('is_active', false)
FROM app.users u
WHERE u.tenant = :tenant AND u.is_active AND u.source = 'm365' AND u.external_id IS NOT NULL
  AND (NOT CAST(:incremental AS boolean) OR u.id IN (SELECT a.id FROM sp_scope_a a))
  AND NOT EXISTS (SELECT 1 FROM sp_du d WHERE d.graph_id = u.external_id);
DROP TABLE IF EXISTS pg_temp.sp_dg;
CREATE TEMP TABLE sp_dg ON COMMIT DROP AS
SELECT
    s.graph_id, s.name, s.mapped_to,
    x.id AS existing_id, x.name AS existing_name, x.removed_at,
    t.id AS target_id,
    coalesce(s.mapped_to, s.name) AS label
FROM sync.snapshot_groups s
LEFT JOIN app.groups x
  ON s.mapped_to IS NULL AND x.tenant = :tenant AND x.external_id = s.graph_id
LEFT JOIN LATERAL (
    SELECT a.id FROM app.groups a
    WHERE a.tenant = :tenant AND a.name = s.mapped_to AND a.source = 'app'
      AND a.removed_at IS NULL
    ORDER BY a.id LIMIT 1
) t ON s.mapped_to IS NOT NULL
WHERE s.tenant = :tenant AND s.included;
CREATE INDEX ON sp_dg (graph_id);
ANALYZE sp_dg (graph_id, mapped_to, target_id, existing_id);
INSERT INTO sync.diffs (tenant, run_id, entity, action, key, label, app_id, before, after)
SELECT
    :tenant, :run_id, 'group',
    CASE WHEN g.existing_id IS NULL THEN 'create'
         WHEN g.removed_at IS NOT NULL THEN 'restore'
         ELSE 'rename' END,
    g.graph_id, g.name, g.existing_id,
    CASE WHEN g.existing_id IS NULL THEN NULL
         WHEN g.removed_at IS NOT NULL THEN jsonb_build_object('removed_at', g.removed_at)
         ELSE '{}' END
      || CASE WHEN g.existing_id IS NOT NULL AND g.existing_name IS DISTINCT FROM g.name
              THEN jsonb_build_object('name', g.existing_name) ELSE '{}' END,
    CASE WHEN g.existing_id IS NULL
         THEN jsonb_build_object('name', g.name, 'external_id', g.graph_id)
         WHEN g.removed_at IS NOT NULL THEN jsonb_build_object('removed_at', NULL)
         ELSE '{}' END
      || CASE WHEN g.existing_id IS NOT NULL AND g.existing_name IS DISTINCT FROM g.name
              THEN jsonb_build_object('name', g.name) ELSE '{}' END
FROM sp_dg g
WHERE g.mapped_to IS NULL
  AND (g.existing_id IS NULL OR g.removed_at IS NOT NULL OR g.existing_name IS DISTINCT FROM g.name);
INSERT INTO sync.diffs (tenant, run_id, entity, action, key, label, app_id, before, after)
SELECT :tenant, :run_id, 'group', 'remove', g.external_id, g.name, g.id,
       jsonb_build_object('removed_at', NULL), jsonb_build_object('removed_at', now())
FROM app.groups g
WHERE g.tenant = :tenant AND g.source = 'm365' AND g.external_id IS NOT NULL
  AND g.removed_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM sp_dg d WHERE d.graph_id = g.external_id AND d.mapped_to IS NULL);
-- Memberships: the wanted pairs (narrow: ids only) against the app's, in one full join that
-- keeps only the differences; labels are joined for those alone. Pairs with a user or group
-- this run creates have no app id yet, so they never match: they are adds. Only mapped
-- groups can repeat a pair (two Graph groups onto one app group): DISTINCT on those adds.
DROP TABLE IF EXISTS pg_temp.sp_dm;
CREATE TEMP TABLE sp_dm ON COMMIT DROP AS
WITH wanted AS (
    SELECT
        coalesce(g.target_id, g.existing_id) AS group_app_id,
        CASE WHEN g.mapped_to IS NULL THEN g.graph_id END AS group_external_id,
        u.app_id AS user_app_id,
        u.graph_id AS user_external_id
    FROM sync.snapshot_memberships m
    JOIN sp_dg g ON g.graph_id = m.group_graph_id
    JOIN sp_du u ON u.graph_id = m.user_graph_id
    WHERE m.tenant = :tenant AND (g.mapped_to IS NULL OR g.target_id IS NOT NULL)
),
held AS (
    SELECT gm.group_id, gm.user_id, gm.source
    FROM app.group_members gm
    WHERE gm.tenant = :tenant AND NOT CAST(:incremental AS boolean)
    UNION ALL
    -- incremental: by user, through the index (a filter on the subquery read every membership)
    SELECT gm.group_id, gm.user_id, gm.source
    FROM sp_scope_a a
    JOIN app.group_members gm ON gm.tenant = :tenant AND gm.user_id = a.id
    WHERE CAST(:incremental AS boolean)
)
SELECT w.group_app_id, w.group_external_id, w.user_app_id, w.user_external_id,
       h.group_id AS gone_group_id, h.user_id AS gone_user_id
FROM wanted w
FULL JOIN held h ON h.group_id = w.group_app_id AND h.user_id = w.user_app_id
WHERE h.group_id IS NULL OR (w.user_external_id IS NULL AND h.source = 'm365');
INSERT INTO sync.diffs (
    tenant, run_id, entity, action, key, label, after,
    group_app_id, group_external_id, user_app_id, user_external_id)
SELECT
    :tenant, :run_id, 'membership', 'add',
    coalesce(d.group_external_id, 'app\:' || d.group_app_id) || '/' || d.user_external_id,
    coalesce(g.name, a.name) || ' / ' || u.email,
    jsonb_build_object('group', coalesce(g.name, a.name), 'user', u.email),
    d.group_app_id, d.group_external_id, d.user_app_id, d.user_external_id
FROM (
    SELECT group_app_id, group_external_id, user_app_id, user_external_id
    FROM sp_dm WHERE user_external_id IS NOT NULL AND group_external_id IS NOT NULL
    UNION ALL
    SELECT DISTINCT group_app_id, group_external_id, user_app_id, user_external_id
    FROM sp_dm WHERE user_external_id IS NOT NULL AND group_external_id IS NULL
) d
JOIN sp_du u ON u.graph_id = d.user_external_id
LEFT JOIN sp_dg g ON g.graph_id = d.group_external_id
LEFT JOIN app.groups a
  ON d.group_external_id IS NULL AND a.tenant = :tenant AND a.id = d.group_app_id;
-- Groups whose members this extraction could not read (staging.unreadable_groups), and every
-- group above one: their memberships are kept as last read, never removed because of the
-- failed read. A user leaving the sync (deactivated) still loses them.
DROP TABLE IF EXISTS pg_temp.sp_unread;
CREATE TEMP TABLE sp_unread ON COMMIT DROP AS
WITH RECURSIVE above (graph_id) AS (
    SELECT u.group_id FROM staging.unreadable_groups u WHERE u.tenant = :tenant
    UNION
    SELECT m.group_id
    FROM above a
    JOIN staging.group_members m
      ON m.tenant = :tenant AND m.member_id = a.graph_id AND m.member_type = 'group'
)
SELECT DISTINCT coalesce(g.target_id, g.existing_id) AS group_app_id
FROM above a
JOIN sp_dg g ON g.graph_id = a.graph_id
WHERE coalesce(g.target_id, g.existing_id) IS NOT NULL;
INSERT INTO sync.diffs (
    tenant, run_id, entity, action, key, label, before,
    group_app_id, group_external_id, user_app_id, user_external_id)
SELECT
    :tenant, :run_id, 'membership', 'remove',
    coalesce(g.external_id, 'app\:' || g.id) || '/' || coalesce(u.external_id, 'app\:' || u.id),
    g.name || ' / ' || u.email,
    jsonb_build_object('group', g.name, 'user', u.email),
    g.id, g.external_id, u.id, u.external_id
FROM sp_dm x
JOIN app.groups g ON g.tenant = :tenant AND g.id = x.gone_group_id
JOIN app.users u ON u.tenant = :tenant AND u.id = x.gone_user_id
WHERE x.user_external_id IS NULL
  AND NOT (x.gone_group_id IN (SELECT r.group_app_id FROM sp_unread r)
           AND EXISTS (SELECT 1 FROM sp_du d WHERE d.graph_id = u.external_id));
INSERT INTO sync.diffs (tenant, run_id, entity, action, key, label, app_id, before, after)
SELECT
    :tenant, :run_id, 'manager', 'set', d.graph_id, d.email, d.app_id,
    jsonb_build_object('manager', cur.email, 'manager_external_id', cur.external_id),
    jsonb_build_object('manager', nm.email, 'manager_external_id', d.manager_graph_id)
FROM sp_du d
LEFT JOIN app.users cur ON cur.tenant = :tenant AND cur.id = d.current_manager_id
LEFT JOIN sync.snapshot_users nm
  ON nm.tenant = :tenant AND nm.graph_id = d.manager_graph_id AND nm.included
WHERE CAST(:import_managers AS boolean)
  -- a manager set by hand (no external_id) stays while Graph names none
  AND cur.external_id IS DISTINCT FROM d.manager_graph_id;
RESET random_page_cost
