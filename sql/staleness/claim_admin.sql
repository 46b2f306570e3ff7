-- Claim the episode's notice to the tenant's admin (once per episode), sent by the caller in
-- the same transaction.
UPDATE sync.stale_tenants
SET admin_notified_at = :now
WHERE tenant = :tenant AND admin_notified_at IS NULL
RETURNING tenant
