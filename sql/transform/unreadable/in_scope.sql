-- The unreadable groups that decide who is in scope: the scope groups themselves and every
-- group nested under one (the nesting closure of sql/transform/closure.sql, from the staged
-- memberships; UNION stops at cycles).
WITH RECURSIVE scope (group_id) AS (
    SELECT g FROM unnest(CAST(:scope_group_ids AS text[])) AS s (g)
    UNION
    SELECT m.member_id
    FROM scope s
    JOIN staging.group_members m
      ON m.tenant = :tenant AND m.group_id = s.group_id AND m.member_type = 'group'
)
SELECT u.group_id, coalesce(nullif(btrim(g.display_name), ''), u.group_id) AS name, u.permission
FROM staging.unreadable_groups u
JOIN scope s ON s.group_id = u.group_id
LEFT JOIN staging.groups g ON g.tenant = u.tenant AND g.id = u.group_id
WHERE u.tenant = :tenant
ORDER BY name, u.group_id
