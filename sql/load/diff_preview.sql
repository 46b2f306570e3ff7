-- The first changes of one run's diff, in apply order, for people to read.
SELECT entity, action, key, label, before, after
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
ORDER BY
    array_position(ARRAY['user', 'group', 'membership', 'manager'], entity),
    array_position(
        ARRAY['deactivate', 'remove', 'update', 'adopt', 'reactivate', 'create', 'restore',
              'rename', 'add', 'set'],
        action),
    label, key
LIMIT :limit
