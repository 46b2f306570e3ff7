-- Whether the extraction wrote nesting edges or other-type members of more than a twentieth
-- of the groups (each such group's members are all looked at): then
-- the whole staging_members query, which reads the membership index once in order (~0.4 s at
-- 100k users), is cheaper than looking at each of those groups' members (~10 s when 3,000 of
-- 4,000 groups were touched by 1 % churn: every user deleted touches each of its groups).
SELECT (SELECT count(*) FROM sync.touched t
        WHERE t.tenant = :tenant AND t.kind IN ('members', 'nesting'))
       > 0.05 * greatest((SELECT count(*) FROM staging.groups g WHERE g.tenant = :tenant), 1)
