-- Wanted memberships of the groups this run creates (no app id in the plan: a first load's
-- million), with their audit rows (sync.changes), in one statement: each planned row is
-- resolved to app ids once (two hash joins on the external ids) and feeds both inserts,
-- with no temp table in between. Nothing else can hold such a pair: the group is new and
-- uncommitted, and each (Graph group, Graph user) is planned once (the snapshot's primary
-- key), so a plain INSERT (no ON CONFLICT: no speculative insertion, no second probe of the
-- primary key per row), and every audited row is inserted; a missing user or group still
-- fails on NOT NULL. Runs after audit/record, so that these rows are the run's last, as
-- before. The rows this run created are not in the planner's statistics yet (nobody may
-- ANALYZE the app's tables inside the sync's transaction), so it would pick nested loops
-- over "empty" tables; hash joins are right for a bulk apply. The statement reports the
-- audit rows, which are the app rows. Statements end with a semicolon at line end.
SET LOCAL enable_nestloop = off;
-- one batch for the hash joins, the sort in memory (as load/diff)
SET LOCAL work_mem = '256MB';
WITH m AS MATERIALIZED (
    SELECT g.id AS group_id, coalesce(d.user_app_id, u.id) AS user_id, d.key, d.label, d.after
    FROM sync.diffs d
    LEFT JOIN app.groups g ON g.tenant = :tenant AND g.external_id = d.group_external_id
    LEFT JOIN app.users u
      ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
    WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
      AND d.action = 'add' AND d.group_app_id IS NULL
), added AS (
    INSERT INTO app.group_members (tenant, group_id, user_id, source)
    SELECT :tenant, m.group_id, m.user_id, 'm365'
    FROM m
    -- in key order: the primary key's btree is appended to, not split at random
    ORDER BY m.group_id, m.user_id
)
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'membership', 'add', m.key, m.label, m.user_id, m.group_id, NULL,
       m.after
FROM m;
SET LOCAL enable_nestloop TO DEFAULT
