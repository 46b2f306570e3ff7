INSERT INTO sync.notification_counts AS c (tenant, kind, count, last_at)
VALUES (:tenant, :kind, :n, :at)
ON CONFLICT (tenant, kind) DO UPDATE
SET count = c.count + excluded.count, last_at = greatest(c.last_at, excluded.last_at)
