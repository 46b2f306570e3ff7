"""The outbox: events the app acts on (joiner, leaver, mover, ...), read with a cursor."""
