DELETE FROM staging.user_licences WHERE tenant = :t AND user_id = ANY (CAST(:ids AS text[]))
