-- Each registered tenant's freshness (registry/staleness.py), all of them or those named:
-- when it was registered; its last complete read, the users' time in staging.extractions (an
-- extraction records it in the transaction that stages the whole read, so a failed or partial
-- read rolls back and records nothing); its last applied sync, the last real sync whose apply
-- committed (not a test sync, an undo or a decision); and the latest failed sync or test sync
-- since that read, with its error.
SELECT t.slug AS tenant,
       t.created_at AS registered_at,
       e.extracted_at AS read_at,
       a.finished_at AS applied_at,
       f.error AS last_error,
       f.started_at AS failed_at
FROM sync.tenant_settings t
LEFT JOIN staging.extractions e ON e.tenant = t.slug AND e.entity = 'users'
LEFT JOIN LATERAL (
    SELECT r.finished_at
    FROM sync.runs r
    WHERE r.tenant = t.slug AND NOT r.dry_run AND r.status = 'success'
      AND r.dagster_run_id IS NOT NULL AND r.undo_of IS NULL
    ORDER BY r.finished_at DESC NULLS LAST
    LIMIT 1
) a ON true
LEFT JOIN LATERAL (
    SELECT r.error, r.started_at
    FROM sync.runs r
    WHERE r.tenant = t.slug AND r.status = 'failed'
      AND r.started_at > coalesce(e.extracted_at, '-infinity')
    ORDER BY r.started_at DESC, r.id DESC
    LIMIT 1
) f ON true
WHERE CAST(:tenants AS text[]) IS NULL OR t.slug = ANY(CAST(:tenants AS text[]))
ORDER BY t.slug
