-- `sync --user` (load/diff.py): the plan keeps the person's own changes and nothing else:
-- their user row, their manager, their memberships of groups the app already holds. Groups
-- are diffed whole, so their rows go; so do the person's adds to a group the app does not
-- hold yet (the next sync creates the group and adds them): those are returned, to be named.
WITH dropped AS (
    DELETE FROM sync.diffs d
    WHERE d.tenant = :tenant AND d.run_id = :run_id
      AND (d.entity = 'group'
           OR (d.entity IN ('user', 'manager') AND d.key <> :person)
           OR (d.entity = 'membership'
               AND (d.user_external_id IS DISTINCT FROM :person OR d.group_app_id IS NULL)))
    RETURNING d.entity, d.label, d.user_external_id
)
SELECT x.label FROM dropped x
WHERE x.entity = 'membership' AND x.user_external_id = :person
ORDER BY x.label
