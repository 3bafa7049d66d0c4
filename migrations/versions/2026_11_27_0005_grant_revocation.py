"""engram_grant_revoked(): lets the token check refuse access tokens of a revoked sign-in.

Engram's access tokens are JWTs checked without the database, so revoking a client in the web
UI, a refresh token at /oauth/revoke, or a whole sign-in after a reused code or refresh token
(RFC 6749 §4.1.2, §10.4) used to leave its access tokens valid until they expired (an hour by
default). Access tokens now carry their sign-in's refresh-token family as `sid`, and the token
check asks this function whether that family was revoked. SECURITY DEFINER because the check
runs before the caller's identity is bound (like engram_resolve_pat); it reveals one boolean per
random family id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from migrations.helpers import q, role_names

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    runtime, _ = role_names()
    op.execute(
        """
        CREATE FUNCTION engram_grant_revoked(grant_id uuid) RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT EXISTS (
                SELECT 1 FROM oauth_refresh_tokens t
                 WHERE t.family_id = engram_grant_revoked.grant_id AND t.revoked_at IS NOT NULL
            );
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION engram_grant_revoked(uuid) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION engram_grant_revoked(uuid) TO {q(runtime)}")


def downgrade() -> None:
    op.execute("DROP FUNCTION engram_grant_revoked(uuid)")
