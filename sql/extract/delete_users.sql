-- Users the delta reported changed or removed: their rows go, the changed ones are copied back.
DELETE FROM staging.users WHERE tenant = :t AND id = ANY (CAST(:ids AS text[]))
