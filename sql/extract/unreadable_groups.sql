-- The groups whose members the latest extraction could not read, with their staged names.
SELECT u.group_id, g.display_name, u.permission, u.status, u.code, u.request_id
FROM staging.unreadable_groups u
LEFT JOIN staging.groups g ON g.tenant = u.tenant AND g.id = u.group_id
WHERE u.tenant = :t
ORDER BY g.display_name, u.group_id
