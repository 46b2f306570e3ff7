-- Claim the episode's alert at :now when none was made yet, or the last one was made at
-- :again_before or earlier (a day before :now); the caller sends it in the same transaction (a
-- failed send rolls the claim back, so the next tick tries again). Returns the alert's number
-- in the episode.
UPDATE sync.stale_tenants
SET alerted_at = :now, alerts = alerts + 1
WHERE tenant = :tenant AND (alerted_at IS NULL OR alerted_at <= :again_before)
RETURNING alerts
