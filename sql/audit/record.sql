-- After the apply, in its transaction: one sync.changes row per applied diff row, with the
-- app ids of the rows this run created and, in `before`, every prior value an undo restores.
-- Rows made in this run are not in the planner's statistics yet (see load/apply_manager_set).
-- Membership adds (a first load has a million) are resolved to app ids again by two hash
-- joins on the external ids: cheaper than writing the resolved rows (with their key, label
-- and after) to a temp table for the app insert and reading them back here. Written in the
-- plan's order: sorting a million wide rows would buy no index order (changes_user is by
-- user, the app's key by group).
SET LOCAL enable_nestloop = off;
-- one batch for the hash joins, the sort in memory (as load/diff)
SET LOCAL work_mem = '256MB';
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT
    :tenant, :run_id, d.entity, d.action, d.key, d.label,
    CASE WHEN d.entity IN ('user', 'manager') THEN coalesce(d.app_id, nu.id)
         WHEN d.entity = 'membership' THEN d.user_app_id END,
    CASE WHEN d.entity = 'group' THEN coalesce(d.app_id, ng.id)
         WHEN d.entity = 'membership' THEN d.group_app_id END,
    CASE WHEN d.entity = 'manager'
              THEN d.before || jsonb_build_object('manager_id', p.manager_id)
         WHEN d.entity = 'user' AND d.action IN ('reactivate', 'deactivate')
              THEN d.before || jsonb_build_object('deactivated_at', p.deactivated_at)
         WHEN d.entity = 'membership' AND d.action = 'remove'
              THEN d.before || jsonb_build_object('source', 'm365')
         ELSE d.before END,
    CASE WHEN d.entity = 'manager'
              THEN d.after || jsonb_build_object('manager_id', nu.manager_id)
         WHEN d.entity = 'user' AND d.action IN ('reactivate', 'deactivate')
              THEN d.after || jsonb_build_object('deactivated_at', nu.deactivated_at)
         ELSE d.after END
FROM sync.diffs d
LEFT JOIN sp_prior p ON p.entity = d.entity AND p.action = d.action AND p.key = d.key
LEFT JOIN app.users nu
  ON d.entity IN ('user', 'manager') AND nu.tenant = :tenant AND nu.external_id = d.key
LEFT JOIN app.groups ng
  ON d.entity = 'group' AND d.app_id IS NULL AND ng.tenant = :tenant AND ng.external_id = d.key
WHERE d.tenant = :tenant AND d.run_id = :run_id
  AND (d.entity <> 'membership' OR d.action = 'remove');
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'membership', 'add', d.key, d.label,
       coalesce(d.user_app_id, u.id), coalesce(d.group_app_id, g.id), NULL, d.after
FROM sync.diffs d
LEFT JOIN app.groups g
  ON d.group_app_id IS NULL AND g.tenant = :tenant AND g.external_id = d.group_external_id
LEFT JOIN app.users u
  ON d.user_app_id IS NULL AND u.tenant = :tenant AND u.external_id = d.user_external_id
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership' AND d.action = 'add';
SET LOCAL enable_nestloop TO DEFAULT
