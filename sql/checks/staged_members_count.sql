-- The tenant's staged memberships, counted (an index-only scan).
SELECT count(*) FROM staging.group_members WHERE tenant = :tenant
