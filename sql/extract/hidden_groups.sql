-- The tenant's hidden-membership groups as last staged, and the groups the last extraction
-- could not read: their members are read whole again (extraction.py).
SELECT g.id FROM staging.groups g
WHERE g.tenant = :t AND g.visibility = 'HiddenMembership'
UNION
SELECT u.group_id FROM staging.unreadable_groups u WHERE u.tenant = :t
