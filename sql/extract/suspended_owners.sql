-- Which of these ids own suspended memberships (soft-deleted before, listed again now).
SELECT DISTINCT owner_id FROM staging.suspended_members
WHERE tenant = :t AND owner_id = ANY (CAST(:ids AS text[]))
