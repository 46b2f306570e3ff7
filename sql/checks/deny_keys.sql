-- The tenant's deny list entries as address keys (sync.address_key, as the transform compares
-- them): `*@domain` entries keep their prefix.
SELECT CASE WHEN e LIKE '*@%' THEN '*@' || sync.address_key(substr(e, 3))
            ELSE sync.address_key(e) END AS entry
FROM unnest(CAST(:entries AS text[])) AS e
