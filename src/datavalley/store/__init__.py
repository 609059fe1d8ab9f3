"""Storage: one SQLAlchemy metadata for all domains, Alembic migrations, SQLite and PostgreSQL engines."""
