-- A tenant's facts for its health checks (graph/health.py): how many hidden-membership groups
-- it had when last staged, and when its delegated sign-in was last refreshed.
SELECT
    (SELECT count(*) FROM staging.groups g
     WHERE g.tenant = :t AND g.visibility = 'HiddenMembership') AS hidden,
    (SELECT c.updated_at FROM sync.token_caches c WHERE c.tenant = :t) AS refreshed_at
