DELETE FROM staging.groups WHERE tenant = :t AND id = ANY (CAST(:ids AS text[]))
