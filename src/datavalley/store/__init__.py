"""Storage: one SQLAlchemy metadata for every domain, Alembic migrations, engines for SQLite and PostgreSQL."""
