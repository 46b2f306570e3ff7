-- The registered tenants (of :only, when given) whose health was not examined since :since,
-- the longest waiting first.
SELECT t.slug
FROM sync.tenant_settings t
LEFT JOIN sync.health_checks h ON h.tenant = t.slug
WHERE (h.checked_at IS NULL OR h.checked_at < :since)
  AND (CAST(:only AS text[]) IS NULL OR t.slug = ANY (CAST(:only AS text[])))
ORDER BY h.checked_at NULLS FIRST, t.slug
LIMIT :n
