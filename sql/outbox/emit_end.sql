-- After outbox/emit: the rest of the transaction plans as before it.
SET LOCAL enable_nestloop TO DEFAULT
