-- Wanted memberships of the groups this run creates (no app id in the plan: a first load's
-- million). Nothing else can hold such a pair: the group is new and uncommitted, and each
-- (Graph group, Graph user) is planned once (the snapshot's primary key), so a plain INSERT
-- (no ON CONFLICT: no speculative insertion, no second probe of the primary key per row).
-- A missing user or group still fails on NOT NULL, as before. Users made in this run are
-- found by their external_id. The rows this run created are not in the planner's statistics
-- yet (nobody may ANALYZE the app's tables inside the sync's transaction), so it would pick
-- nested loops over "empty" tables; hash joins are right for a bulk apply. Statements end
-- with a semicolon at line end.
SET LOCAL enable_nestloop = off;
-- one batch for the hash joins, the sort in memory (as load/diff)
SET LOCAL work_mem = '256MB';
INSERT INTO app.group_members (tenant, group_id, user_id, source)
SELECT :tenant, g.id, coalesce(d.user_app_id, u.id), 'm365'
FROM sync.diffs d
LEFT JOIN app.groups g ON g.tenant = :tenant AND g.external_id = d.group_external_id
LEFT JOIN app.users u
  ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership' AND d.action = 'add'
  AND d.group_app_id IS NULL
-- in key order: the primary key's btree is appended to, not split at random
ORDER BY 2, 3;
SET LOCAL enable_nestloop TO DEFAULT
