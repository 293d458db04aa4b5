"""Alembic migrations: one history for the whole Attune schema."""
