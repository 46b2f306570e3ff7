-- Display names of Graph groups of the latest extraction, by id.
SELECT id, coalesce(nullif(btrim(display_name), ''), id) AS name
FROM staging.groups
WHERE tenant = :tenant AND id = ANY (CAST(:ids AS text[]))
