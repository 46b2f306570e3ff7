-- Rows staged for the tenant, to reconcile against Graph's $count.
SELECT
    (SELECT count(*) FROM staging.users WHERE tenant = :t) AS users,
    (SELECT count(*) FROM staging.groups WHERE tenant = :t) AS "groups",
    (SELECT count(*) FROM staging.group_members WHERE tenant = :t) AS group_members,
    (SELECT count(*) FROM staging.user_licences WHERE tenant = :t) AS user_licences,
    (SELECT count(*) FROM staging.user_managers WHERE tenant = :t) AS user_managers,
    (SELECT count(*) FROM staging.subscribed_skus WHERE tenant = :t) AS subscribed_skus
