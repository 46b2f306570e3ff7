-- The tenant's staged users, counted (an index-only scan): the row-count check of a daily
-- check, which validates only the changed rows.
SELECT count(*) FROM staging.users WHERE tenant = :tenant
