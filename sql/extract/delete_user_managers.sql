DELETE FROM staging.user_managers WHERE tenant = :t AND user_id = ANY (CAST(:ids AS text[]))
