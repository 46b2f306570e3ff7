"""Graph change notifications: the receiver (an ASGI app), what it records in Postgres, and
the upkeep of each tenant's Graph subscriptions. No Dagster imports here."""
