-- Rows staged for the tenant, to reconcile against Graph's $count: the counts the staging
-- triggers keep (sync.staged_rows, migration 017), this transaction's writes included.
SELECT
    coalesce(max(n) FILTER (WHERE tbl = 'users'), 0) AS users,
    coalesce(max(n) FILTER (WHERE tbl = 'groups'), 0) AS "groups",
    coalesce(max(n) FILTER (WHERE tbl = 'group_members'), 0) AS group_members,
    coalesce(max(n) FILTER (WHERE tbl = 'user_licences'), 0) AS user_licences,
    coalesce(max(n) FILTER (WHERE tbl = 'user_managers'), 0) AS user_managers,
    coalesce(max(n) FILTER (WHERE tbl = 'subscribed_skus'), 0) AS subscribed_skus
FROM sync.staged_rows
WHERE tenant = :t
