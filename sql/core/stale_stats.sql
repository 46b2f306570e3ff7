-- Of the given tables (schema.name), those the planner has no statistics for, or whose rows
-- changed by more than a fifth since their last ANALYZE (committed changes only).
SELECT n.nspname || '.' || c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname || '.' || c.relname = ANY (CAST(:tables AS text[]))
  AND (c.reltuples < 0
       OR coalesce(s.n_mod_since_analyze, 0) > 0.2 * greatest(c.reltuples, 1000))
ORDER BY 1
