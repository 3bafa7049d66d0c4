"""Database: engines, the identity-binding listener, migrations, the embedded PostgreSQL."""
