-- Imported groups mapped onto an app group that does not exist (or was removed): skipped.
SELECT s.graph_id, s.mapped_to
FROM sync.snapshot_groups s
WHERE s.tenant = :tenant AND s.included AND s.mapped_to IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM app.groups a
      WHERE a.tenant = :tenant AND a.name = s.mapped_to AND a.source = 'app'
        AND a.removed_at IS NULL)
ORDER BY s.graph_id
