-- The groups whose members the latest extraction could not read, named, with the count of
-- their staged (last read) direct members.
SELECT u.group_id, coalesce(nullif(btrim(g.display_name), ''), u.group_id) AS name,
       u.permission,
       (SELECT count(*) FROM staging.group_members m
        WHERE m.tenant = :tenant AND m.group_id = u.group_id) AS kept_members
FROM staging.unreadable_groups u
LEFT JOIN staging.groups g ON g.tenant = u.tenant AND g.id = u.group_id
WHERE u.tenant = :tenant
ORDER BY name, u.group_id
