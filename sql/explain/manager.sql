-- The user's manager in Graph (staging), whatever the snapshot made of it.
SELECT manager_id FROM staging.user_managers WHERE tenant = :tenant AND user_id = :user_id
