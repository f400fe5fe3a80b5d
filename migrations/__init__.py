"""The registry's Alembic environment and migrations (run with `meshdns migrate`)."""
