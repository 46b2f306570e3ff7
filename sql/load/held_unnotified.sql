-- The tenant's held changes its admin has not been emailed about.
SELECT kind, key FROM sync.withheld
WHERE tenant = :tenant AND status IN ('held', 'app_decision') AND notified_at IS NULL
