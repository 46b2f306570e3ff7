-- The other kind of groups link (with or without members) is dropped when one is saved.
DELETE FROM sync.delta_state WHERE tenant = :t AND entity = :entity
