-- The address and name values a run's diff would write into existing app rows (updates,
-- adoptions, reactivations of users; renames of groups): one row per changed field.
SELECT d.entity, d.action, d.key, d.label, f.field, d.after ->> f.field AS new_value
FROM sync.diffs d
CROSS JOIN LATERAL (
    SELECT unnest(CASE d.entity WHEN 'user' THEN ARRAY['email', 'display_name']
                                ELSE ARRAY['name'] END) AS field
) f
WHERE d.tenant = :tenant AND d.run_id = :run_id
  AND ((d.entity = 'user' AND d.action IN ('update', 'adopt', 'reactivate'))
       OR (d.entity = 'group' AND d.action IN ('rename', 'restore')))
  AND d.after ? f.field
