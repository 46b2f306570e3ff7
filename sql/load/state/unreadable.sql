-- Whether this extraction could not read some group's members (their memberships are kept).
SELECT EXISTS (SELECT 1 FROM staging.unreadable_groups WHERE tenant = :tenant)
