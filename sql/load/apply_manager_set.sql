-- Direct managers of the users that existed before this run (adopted ones included), after
-- this run's users exist; a null manager_external_id clears it. The users this run creates
-- got theirs in load/apply_user_create.
-- The rows this run created are not in the planner's statistics yet (nobody may ANALYZE the
-- app's tables inside the sync's transaction), so it would pick nested loops over "empty"
-- tables; hash joins are right for a bulk apply. Statements end with a semicolon at line end.
SET LOCAL enable_nestloop = off;
UPDATE app.users u
SET manager_id = m.id, updated_at = now()
FROM sync.diffs d
LEFT JOIN app.users m
  ON m.tenant = :tenant AND m.external_id = d.after ->> 'manager_external_id'
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'manager' AND d.action = 'set'
  AND d.app_id IS NOT NULL
  AND u.tenant = :tenant AND u.external_id = d.key;
SET LOCAL enable_nestloop TO DEFAULT
