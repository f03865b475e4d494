"""The engine's work as services: apply inputs (events and timers), deliver the outbox.

Each service finds work in the database, claims a unit of it there (partitions of users
for inputs, leased messages for the outbox), does it and releases it; nothing is done
twice and nothing waits behind a unit someone else holds. Where the work runs is the
executor's business: the threads of ``journey run`` (``engine.live.embedded``) or any
other caller of ``handle``. The services hold no state between calls but their settings.
"""
