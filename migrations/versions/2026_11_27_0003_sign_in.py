"""Sign-in: browser sessions, local accounts, pending authorizations, consents, codes, refresh tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from migrations.helpers import grant_runtime, isolate_by_owner, q, role_names

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

USER_TABLES = ["browser_sessions", "local_accounts", "oauth_consents", "oauth_codes", "oauth_refresh_tokens"]


def upgrade() -> None:
    runtime, _ = role_names()
    op.execute(
        """
        CREATE TABLE browser_sessions (
            id uuid PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            token_hash bytea NOT NULL UNIQUE,
            method text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            last_seen_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX browser_sessions_owner_idx ON browser_sessions (owner_email)")
    op.execute(
        """
        CREATE TABLE local_accounts (
            owner_email text PRIMARY KEY REFERENCES users (email) ON DELETE CASCADE,
            password_hash text NOT NULL,
            is_admin boolean NOT NULL DEFAULT false,
            failed_attempts integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            password_changed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE oauth_consents (
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            client_id text NOT NULL,
            scopes text[] NOT NULL,
            granted_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (owner_email, client_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE oauth_codes (
            code_hash bytea PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            client_id text NOT NULL,
            redirect_uri text NOT NULL,
            code_challenge text NOT NULL,
            resource text NOT NULL,
            scopes text[] NOT NULL,
            family_id uuid NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX oauth_codes_owner_idx ON oauth_codes (owner_email)")
    op.execute(
        """
        CREATE TABLE oauth_refresh_tokens (
            id uuid PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            token_hash bytea NOT NULL UNIQUE,
            family_id uuid NOT NULL,
            client_id text NOT NULL,
            resource text NOT NULL,
            scopes text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            used_at timestamptz,
            revoked_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX oauth_refresh_tokens_owner_idx ON oauth_refresh_tokens (owner_email, client_id)")
    op.execute("CREATE INDEX oauth_refresh_tokens_family_idx ON oauth_refresh_tokens (family_id)")
    # Before anyone has signed in: an authorization request waiting for login and consent, keyed by
    # an unguessable id; and one-time sign-in links. Neither holds user data beyond an email.
    op.execute(
        """
        CREATE TABLE oauth_pending (
            id text PRIMARY KEY,
            client_id text NOT NULL,
            redirect_uri text NOT NULL,
            state text,
            code_challenge text NOT NULL,
            resource text NOT NULL,
            scopes text[] NOT NULL,
            prompt text,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE login_states (
            id text PRIMARY KEY,
            nonce text NOT NULL,
            code_verifier text NOT NULL,
            next_path text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE login_failures (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            address text NOT NULL,
            at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX login_failures_address_idx ON login_failures (address, at)")
    op.execute(
        """
        CREATE TABLE setup_links (
            token_hash bytea PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )

    for table in USER_TABLES:
        isolate_by_owner(table)
        grant_runtime("SELECT, INSERT, UPDATE, DELETE", table)
    for table in ("oauth_pending", "login_states", "login_failures", "setup_links"):
        grant_runtime("SELECT, INSERT, UPDATE, DELETE", table)

    # Codes, refresh tokens and session cookies arrive before anyone is bound. This narrow door
    # answers only "whose is this hash?"; everything else happens under RLS as that user.
    op.execute(
        """
        CREATE FUNCTION engram_owner_of(kind text, token_hash bytea) RETURNS text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT CASE kind
                WHEN 'code' THEN (SELECT owner_email FROM oauth_codes WHERE code_hash = token_hash)
                WHEN 'refresh' THEN (SELECT owner_email FROM oauth_refresh_tokens t WHERE t.token_hash = $2)
                WHEN 'session' THEN (SELECT owner_email FROM browser_sessions s
                                      WHERE s.token_hash = $2 AND s.expires_at > now())
            END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION engram_owner_of(text, bytea) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION engram_owner_of(text, bytea) TO {q(runtime)}")
    # Is there any local account yet? (decides whether to print a first-run sign-in link)
    op.execute(
        """
        CREATE FUNCTION engram_local_account_count() RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            SELECT count(*) FROM local_accounts
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION engram_local_account_count() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION engram_local_account_count() TO {q(runtime)}")

    op.execute(
        "CREATE TRIGGER local_accounts_audit AFTER INSERT OR UPDATE OR DELETE ON local_accounts "
        "FOR EACH ROW EXECUTE FUNCTION engram_audit_row('password_hash', 'failed_attempts,locked_until', "
        "'owner_email')"
    )
    op.execute(
        "CREATE TRIGGER oauth_consents_audit AFTER INSERT OR UPDATE OR DELETE ON oauth_consents "
        "FOR EACH ROW EXECUTE FUNCTION engram_audit_row('', '', 'owner_email')"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION engram_local_account_count()")
    op.execute("DROP FUNCTION engram_owner_of(text, bytea)")
    for table in (
        "setup_links",
        "login_failures",
        "login_states",
        "oauth_pending",
        "oauth_refresh_tokens",
        "oauth_codes",
        "oauth_consents",
        "local_accounts",
        "browser_sessions",
    ):
        op.execute(f"DROP TABLE {table}")
