SELECT id FROM staging.groups WHERE tenant = :t ORDER BY id
