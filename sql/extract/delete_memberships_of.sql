-- A removed directory object leaves every group it was a member of.
DELETE FROM staging.group_members WHERE tenant = :t AND member_id = ANY (CAST(:ids AS text[]))
