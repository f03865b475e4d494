"""The live engine: stored events, durable timers and the outbox, carried out."""
