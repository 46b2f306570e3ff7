-- After the apply, in its transaction: one sync.changes row per applied diff row, with the
-- app ids of the rows this run created and, in `before`, every prior value an undo restores.
-- Rows made in this run are not in the planner's statistics yet (see load/apply_manager_set).
-- Membership adds (a first load has a million) are recorded by the steps that apply them,
-- which run after this one (load/apply_membership_add*), so that they are the run's last
-- rows, as before.
SET LOCAL enable_nestloop = off;
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
SET LOCAL enable_nestloop TO DEFAULT
