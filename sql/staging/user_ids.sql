SELECT id FROM staging.users WHERE tenant = :t ORDER BY id
