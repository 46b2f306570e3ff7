-- Advanced in the transaction that updated staging: the link and the rows move together.
INSERT INTO sync.delta_state (tenant, entity, delta_link, updated_at)
VALUES (:t, :entity, :link, now())
ON CONFLICT (tenant, entity) DO UPDATE
SET delta_link = excluded.delta_link, updated_at = excluded.updated_at
