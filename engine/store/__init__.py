"""The durable store: the database is the source of truth (SQLite embedded, PostgreSQL served).

``schema`` declares the tables, ``database`` opens and migrates them, and the
repositories beside them read and write the engine's state in transactions.
"""
