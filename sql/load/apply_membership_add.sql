-- Wanted memberships of groups that exist already (load/apply_membership_add_new_groups does
-- those of the groups this run creates), after their audit rows: every planned row is
-- recorded, as before. A person may have added the same pair in the app since the plan was
-- made, and two Graph groups mapped onto one app group can plan one pair twice: ON CONFLICT
-- DO NOTHING keeps the pair once, and the step reports the rows it inserted. Users made in
-- this run are found by their external_id; hash joins, as in
-- load/apply_membership_add_new_groups. Statements end with a semicolon at line end.
SET LOCAL enable_nestloop = off;
-- one batch for the hash joins, the sort in memory (as load/diff)
SET LOCAL work_mem = '256MB';
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'membership', 'add', d.key, d.label, coalesce(d.user_app_id, u.id),
       d.group_app_id, NULL, d.after
FROM sync.diffs d
LEFT JOIN app.users u
  ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership' AND d.action = 'add'
  AND d.group_app_id IS NOT NULL;
INSERT INTO app.group_members (tenant, group_id, user_id, source)
SELECT :tenant, d.group_app_id, coalesce(d.user_app_id, u.id), 'm365'
FROM sync.diffs d
LEFT JOIN app.users u
  ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership' AND d.action = 'add'
  AND d.group_app_id IS NOT NULL
ORDER BY 2, 3
ON CONFLICT (tenant, group_id, user_id) DO NOTHING;
SET LOCAL enable_nestloop TO DEFAULT
