"""OAuth clients: dynamically registered (RFC 7591) and Client ID Metadata Documents (cached).

Not user-owned, so no row-level security: a client is registered before anyone signs in, and
every user's authorization goes through the same client row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from migrations.helpers import grant_runtime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE oauth_clients (
            client_id text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 2048),
            kind text NOT NULL CHECK (kind IN ('dynamic', 'metadata_document')),
            client_secret_hash bytea,
            token_endpoint_auth_method text NOT NULL
                CHECK (token_endpoint_auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
            client_name text NOT NULL,
            client_uri text,
            logo_uri text,
            redirect_uris text[] NOT NULL CHECK (cardinality(redirect_uris) > 0),
            grant_types text[] NOT NULL,
            response_types text[] NOT NULL,
            scope text,
            application_type text NOT NULL CHECK (application_type IN ('native', 'web')),
            software_id text,
            software_version text,
            metadata jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            fetched_at timestamptz,
            expires_at timestamptz,
            last_used_at timestamptz,
            -- A secret exactly when the client authenticates with one; never for a metadata document.
            CHECK ((client_secret_hash IS NULL) = (token_endpoint_auth_method = 'none')),
            CHECK (kind = 'dynamic' OR token_endpoint_auth_method = 'none'),
            CHECK (kind = 'dynamic' OR (fetched_at IS NOT NULL AND expires_at IS NOT NULL)),
            CHECK (kind = 'metadata_document' OR client_id !~ '^https?://')
        )
        """
    )
    grant_runtime("SELECT, INSERT, UPDATE", "oauth_clients")


def downgrade() -> None:
    op.execute("DROP TABLE oauth_clients")
