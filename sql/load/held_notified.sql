-- The tenant's held changes: its admin has been emailed about them.
UPDATE sync.withheld SET notified_at = now()
WHERE tenant = :tenant AND status IN ('held', 'app_decision') AND notified_at IS NULL
