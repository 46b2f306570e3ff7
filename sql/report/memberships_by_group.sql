-- Membership changes of one run per group: what a report too large to email carries instead
-- of one row per membership.
SELECT coalesce(after ->> 'group', before ->> 'group') AS app_group,
       count(*) FILTER (WHERE action = 'add') AS adds,
       count(*) FILTER (WHERE action = 'remove') AS removes
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id AND entity = 'membership'
GROUP BY 1
ORDER BY 1
