-- New groups the sync owns (mapped groups are never created).
INSERT INTO app.groups (tenant, name, external_id, source)
SELECT :tenant, d.after ->> 'name', d.key, 'm365'
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'group' AND d.action = 'create'
