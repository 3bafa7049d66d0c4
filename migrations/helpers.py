"""What revisions share: the role names they grant to, and the RLS recipe for a user-owned table."""

from __future__ import annotations

from alembic import op
from sqlalchemy import text


def role_names() -> tuple[str, str | None]:
    """(runtime role, auditor role or None); passed in by `app.db.migrate`."""
    attrs = op.get_context().config.attributes  # type: ignore[union-attr]
    runtime = attrs.get("runtime_role", "engram_app")
    auditor = attrs.get("auditor_role", "engram_auditor")
    bind = op.get_bind()
    exists = bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": runtime}).scalar()
    if not exists:
        raise RuntimeError(
            f"The runtime role {runtime!r} does not exist. Create it first (as a superuser): "
            f"CREATE ROLE {runtime} LOGIN PASSWORD '...' NOSUPERUSER NOBYPASSRLS;"
        )
    if auditor and not bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": auditor}).scalar():
        auditor = None
    return runtime, auditor


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def grant_runtime(sql_privileges: str, table: str) -> None:
    runtime, _ = role_names()
    op.execute(f"GRANT {sql_privileges} ON {table} TO {q(runtime)}")


def isolate_by_owner(table: str, owner_column: str = "owner_email") -> None:
    """ENABLE + FORCE row-level security keyed on app.user_email, in the plain form the planner can see.

    The migrating (owner) role gets its own policy so that maintenance commands see every row;
    the runtime role only ever matches rows of the bound user.
    """
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_isolation ON {table} FOR ALL TO PUBLIC "
        f"USING ({owner_column} = current_setting('app.user_email', true)) "
        f"WITH CHECK ({owner_column} = current_setting('app.user_email', true))"
    )
    op.execute(f"CREATE POLICY {table}_maintenance ON {table} FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true)")
