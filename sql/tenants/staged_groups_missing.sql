-- Which of these Graph group ids are not in the tenant's latest extraction (staging.groups).
SELECT x.id
FROM unnest(CAST(:ids AS text[])) AS x (id)
WHERE NOT EXISTS (SELECT 1 FROM staging.groups g WHERE g.tenant = :tenant AND g.id = x.id)
ORDER BY x.id
