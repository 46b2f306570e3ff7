-- (kind, keys) of the change set taken (sp_touched).
SELECT kind, count(*) FROM sp_touched GROUP BY kind
