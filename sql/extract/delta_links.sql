SELECT entity, delta_link FROM sync.delta_state WHERE tenant = :t
