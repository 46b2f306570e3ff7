-- Every direct-member row of these groups (a group re-read whole, or removed).
DELETE FROM staging.group_members WHERE tenant = :t AND group_id = ANY (CAST(:ids AS text[]))
