-- The tenant's last applied diff (sync.diff_state), if any.
SELECT fingerprint, unreadable FROM sync.diff_state WHERE tenant = :tenant
