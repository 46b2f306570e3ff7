-- The events of run :run_id, from its audit rows (sync.changes), in its transaction: one
-- event per person per run and kind (joiner or leaver, else address_changed and/or mover),
-- and one per group created (or restored) or removed. A first load's 1.2 M membership adds
-- become the `groups_added` (app.groups ids) of its joiners, not 1.2 M events. The same
-- rules read an undo's audit rows (revert / deactivate / remove / add), so an undo writes
-- the inverse events; a decision's rows (entity `decision`) change no app row and make none.
-- The statement reports the events it wrote, per type, with the largest id (for the
-- NOTIFY). The payload's shape is sync_pipeline/outbox/events.schema.json (`version` 1).
-- Set-wise, one pass over the run's audit rows. A bulk run's rows are not in the planner's
-- statistics yet (written in this transaction): hash joins, as in the apply, for 10,000 rows
-- and more; a nightly run's few hundred join app.users and app.groups by their primary keys
-- instead of reading every tenant's rows (a seq scan of app.groups took 0.6 s of 0.65).
SELECT set_config('enable_nestloop',
                  CASE WHEN (SELECT count(*) FROM (
                                 SELECT 1 FROM sync.changes
                                 WHERE tenant = :tenant AND run_id = :run_id LIMIT 10000) n)
                            >= 10000 THEN 'off' ELSE 'on' END,
                  true);
SET LOCAL work_mem = '256MB';
WITH ch AS MATERIALIZED (
    -- a membership's labels are not needed: the tuplestore stays narrow (1.2 M rows)
    SELECT c.entity, c.action, c.user_id, c.group_id,
           CASE WHEN c.entity <> 'membership' THEN c.before END AS before,
           CASE WHEN c.entity <> 'membership' THEN c.after END AS after
    FROM sync.changes c
    WHERE c.tenant = :tenant AND c.run_id = :run_id AND c.entity <> 'decision'
),
-- per person: the prior and the new value of each column the run set (user and manager
-- rows have disjoint keys); the audit's bookkeeping columns are not the app's business
fields AS (
    SELECT c.user_id,
           bool_or(c.entity = 'user' AND c.action = 'create') AS created,
           sync.jsonb_concat_agg(c.before) - ARRAY['external_id', 'source', 'deactivated_at']
               AS before,
           sync.jsonb_concat_agg(c.after) - ARRAY['external_id', 'source', 'deactivated_at']
               AS after
    FROM ch c
    WHERE c.entity IN ('user', 'manager') AND c.user_id IS NOT NULL
    GROUP BY c.user_id
),
-- per person: the app groups the run added them to and removed them from (app.groups ids)
memberships AS (
    SELECT c.user_id,
           jsonb_agg(c.group_id ORDER BY c.group_id) FILTER (WHERE c.action = 'add') AS added,
           jsonb_agg(c.group_id ORDER BY c.group_id) FILTER (WHERE c.action = 'remove')
               AS removed
    FROM ch c
    WHERE c.entity = 'membership'
    GROUP BY c.user_id
),
people AS (
    SELECT coalesce(f.user_id, m.user_id) AS user_id, coalesce(f.created, false) AS created,
           f.before, f.after, m.added, m.removed
    FROM fields f
    FULL JOIN memberships m ON m.user_id = f.user_id
),
person_events AS (
    SELECT p.user_id, u.external_id, k.type, p.created, p.before, p.after, p.added,
           p.removed, u.id, u.email, u.display_name, u.first_name, u.last_name, u.job_title,
           u.department, u.manager_id, u.is_active
    FROM people p
    JOIN app.users u ON u.tenant = :tenant AND u.id = p.user_id
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN p.created OR (p.before ->> 'is_active' = 'false'
                               AND p.after ->> 'is_active' = 'true') THEN 'joiner'
            WHEN p.after ->> 'is_active' = 'false'
                 AND (p.before ->> 'is_active') IS DISTINCT FROM 'false' THEN 'leaver'
        END AS life
    ) l
    CROSS JOIN LATERAL (
        SELECT l.life AS type WHERE l.life IS NOT NULL
        UNION ALL
        SELECT 'address_changed'
        WHERE l.life IS NULL AND p.after ? 'email'
          AND (p.before -> 'email') IS DISTINCT FROM (p.after -> 'email')
        UNION ALL
        SELECT 'mover'
        WHERE l.life IS NULL AND (
            p.added IS NOT NULL OR p.removed IS NOT NULL
            OR EXISTS (SELECT 1 FROM jsonb_each(coalesce(p.after, '{}')) a
                       WHERE a.key IN ('job_title', 'department', 'manager_id')
                         AND a.value IS DISTINCT FROM p.before -> a.key))
    ) k
),
-- mover: the columns that moved; address_changed: the address; joiner, leaver: all
person_rows AS (
    SELECT 1 AS part, e.user_id AS ord, e.type, e.user_id, NULL::bigint AS group_id,
           e.external_id,
           jsonb_build_object(
               'version', 1,
               'user', jsonb_build_object(
                   'id', e.id, 'external_id', e.external_id, 'email', e.email,
                   'display_name', e.display_name, 'first_name', e.first_name,
                   'last_name', e.last_name, 'job_title', e.job_title,
                   'department', e.department, 'manager_id', e.manager_id,
                   'is_active', e.is_active),
               'before', CASE
                   WHEN e.created THEN NULL
                   WHEN e.type IN ('joiner', 'leaver') THEN coalesce(e.before, '{}')
                   WHEN e.type = 'address_changed'
                       THEN jsonb_build_object('email', e.before -> 'email')
                   ELSE (SELECT coalesce(jsonb_object_agg(a.key, e.before -> a.key)
                                             FILTER (WHERE e.before ? a.key), '{}')
                         FROM jsonb_each(e.after) a
                         WHERE a.key IN ('job_title', 'department', 'manager_id', 'manager',
                                         'manager_external_id')
                           AND a.value IS DISTINCT FROM e.before -> a.key) END,
               'after', CASE
                   WHEN e.type IN ('joiner', 'leaver') THEN coalesce(e.after, '{}')
                   WHEN e.type = 'address_changed'
                       THEN jsonb_build_object('email', e.after -> 'email')
                   ELSE (SELECT coalesce(jsonb_object_agg(a.key, a.value), '{}')
                         FROM jsonb_each(e.after) a
                         WHERE a.key IN ('job_title', 'department', 'manager_id', 'manager',
                                         'manager_external_id')
                           AND a.value IS DISTINCT FROM e.before -> a.key) END,
               'groups_added', CASE WHEN e.type = 'address_changed' THEN '[]'
                                    ELSE coalesce(e.added, '[]') END,
               'groups_removed', CASE WHEN e.type = 'address_changed' THEN '[]'
                                      ELSE coalesce(e.removed, '[]') END) AS payload
    FROM person_events e
),
group_rows AS (
    SELECT CASE k.type WHEN 'group_created' THEN 0 ELSE 2 END AS part, g.id AS ord, k.type,
           NULL::bigint AS user_id, g.id AS group_id, g.external_id,
           jsonb_build_object(
               'version', 1,
               'group', jsonb_build_object('id', g.id, 'external_id', g.external_id,
                                           'name', g.name, 'source', g.source,
                                           'removed_at', g.removed_at),
               'restored', c.action IN ('restore', 'revert'),
               'before', c.before, 'after', c.after) AS payload
    FROM ch c
    JOIN app.groups g ON g.tenant = :tenant AND g.id = c.group_id
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN c.action IN ('create', 'restore') THEN 'group_created'
            WHEN c.action = 'remove' THEN 'group_removed'
            WHEN c.action = 'revert' AND c.after ? 'removed_at'
                 AND c.after ->> 'removed_at' IS NULL
                 AND c.before ->> 'removed_at' IS NOT NULL THEN 'group_created'
            WHEN c.action = 'revert' AND c.after ->> 'removed_at' IS NOT NULL
                 AND c.before ->> 'removed_at' IS NULL THEN 'group_removed'
        END AS type
    ) k
    WHERE c.entity = 'group' AND k.type IS NOT NULL
),
-- groups created first (joiners may name them), people by app id, removed groups last
ins AS (
    INSERT INTO sync.events (tenant, run_id, type, user_id, group_id, external_id, payload)
    SELECT :tenant, :run_id, r.type, r.user_id, r.group_id, r.external_id, r.payload
    FROM (SELECT * FROM group_rows UNION ALL SELECT * FROM person_rows) r
    ORDER BY r.part, r.ord, r.type
    RETURNING id, type
)
SELECT type, count(*) AS n, max(id) AS last_id FROM ins GROUP BY type
