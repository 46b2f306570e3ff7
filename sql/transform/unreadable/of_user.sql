-- The unreadable groups a user is in as last read: a staged member of the group, or of a
-- group nested under it.
WITH RECURSIVE below (root, group_id) AS (
    SELECT u.group_id, u.group_id FROM staging.unreadable_groups u WHERE u.tenant = :tenant
    UNION
    SELECT b.root, m.member_id
    FROM below b
    JOIN staging.group_members m
      ON m.tenant = :tenant AND m.group_id = b.group_id AND m.member_type = 'group'
)
SELECT DISTINCT u.group_id, coalesce(nullif(btrim(g.display_name), ''), u.group_id) AS name,
       u.permission
FROM below b
JOIN staging.group_members m
  ON m.tenant = :tenant AND m.group_id = b.group_id AND m.member_id = :user_id
JOIN staging.unreadable_groups u ON u.tenant = :tenant AND u.group_id = b.root
LEFT JOIN staging.groups g ON g.tenant = :tenant AND g.id = u.group_id
ORDER BY name, u.group_id
