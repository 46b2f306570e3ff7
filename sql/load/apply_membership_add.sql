-- Wanted memberships; groups and users made in this run are found by their external_id.
-- The resolved rows go to a temp table (no WAL) that the audit (audit/record) reads again,
-- instead of joining the run's diff to app.* a second time. The rows this run created are not
-- in the planner's statistics yet (nobody may ANALYZE the app's tables inside the sync's
-- transaction), so it would pick nested loops over "empty" tables; hash joins are right for a
-- bulk apply. Statements end with a semicolon at line end.
SET LOCAL enable_nestloop = off;
DROP TABLE IF EXISTS pg_temp.sp_madd;
CREATE TEMP TABLE sp_madd ON COMMIT DROP AS
SELECT coalesce(d.group_app_id, g.id) AS group_id, coalesce(d.user_app_id, u.id) AS user_id,
       d.key, d.label, d.after
FROM sync.diffs d
LEFT JOIN app.groups g
  ON d.group_app_id IS NULL AND g.tenant = :tenant AND g.external_id = d.group_external_id
LEFT JOIN app.users u
  ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership' AND d.action = 'add'
-- in key order: the primary key's btree is appended to, not split at random
ORDER BY 1, 2;
SET LOCAL enable_nestloop TO DEFAULT;
INSERT INTO app.group_members (tenant, group_id, user_id, source)
SELECT :tenant, group_id, user_id, 'm365'
FROM sp_madd
ON CONFLICT (tenant, group_id, user_id) DO NOTHING
