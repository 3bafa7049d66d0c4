"""Core schema: users, apps, memories, history, access log, personal tokens, signing keys, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from migrations.helpers import grant_runtime, isolate_by_owner, q, role_names

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

USER_TABLES = ["users", "apps", "memories", "memory_history", "memory_access_log", "personal_access_tokens"]


def upgrade() -> None:
    attrs = op.get_context().config.attributes  # type: ignore[union-attr]
    dimensions = int(attrs.get("embedding_dimensions", 384))
    model = str(attrs.get("embedding_model", "all-MiniLM-L6-v2")).replace("'", "''")
    runtime, auditor = role_names()

    op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.execute(
        """
        CREATE TABLE engram_meta (
            key text PRIMARY KEY,
            value text NOT NULL
        )
        """
    )
    op.execute(
        f"INSERT INTO engram_meta (key, value) VALUES "
        f"('embedding_dimensions', '{dimensions}'), ('embedding_model', '{model}')"
    )

    op.execute(
        """
        CREATE TABLE users (
            email text PRIMARY KEY CHECK (email = lower(email) AND email LIKE '_%@_%'),
            display_name text,
            memory_count integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE apps (
            id uuid PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            client_id text NOT NULL,
            name text NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (owner_email, client_id)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE memories (
            id uuid PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            app_id uuid REFERENCES apps (id) ON DELETE SET NULL,
            content text NOT NULL CHECK (length(content) > 0),
            content_hash text NOT NULL,
            embedding vector({dimensions}) NOT NULL,
            content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
            metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
            tags text[] NOT NULL DEFAULT '{{}}',
            state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'archived')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            archived_at timestamptz
        )
        """
    )
    # The owner btree drives both the per-user exact vector scan and keyset pagination.
    op.execute("CREATE INDEX memories_owner_created_idx ON memories (owner_email, created_at DESC, id DESC)")
    op.execute("CREATE UNIQUE INDEX memories_owner_hash_key ON memories (owner_email, content_hash)")
    op.execute("CREATE INDEX memories_tsv_idx ON memories USING gin (content_tsv)")
    op.execute("CREATE INDEX memories_tags_idx ON memories USING gin (tags)")
    op.execute("CREATE INDEX memories_app_idx ON memories (app_id)")
    op.execute("CREATE INDEX memories_embedding_hnsw_idx ON memories USING hnsw (embedding vector_cosine_ops)")

    op.execute(
        """
        CREATE TABLE memory_history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            memory_id uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            owner_email text NOT NULL,
            event text NOT NULL CHECK (event IN ('created', 'updated', 'state', 'merged', 'reembedded')),
            from_state text,
            to_state text,
            old_content text,
            new_content text,
            client_id text,
            at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX memory_history_owner_idx ON memory_history (owner_email)")
    op.execute("CREATE INDEX memory_history_memory_idx ON memory_history (memory_id, at)")

    op.execute(
        """
        CREATE TABLE memory_access_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            memory_id uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
            owner_email text NOT NULL,
            app_id uuid REFERENCES apps (id) ON DELETE SET NULL,
            client_id text,
            operation text NOT NULL CHECK (operation IN ('search', 'list', 'get')),
            at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX memory_access_log_owner_idx ON memory_access_log (owner_email, at)")
    op.execute("CREATE INDEX memory_access_log_memory_idx ON memory_access_log (memory_id, at)")
    op.execute("CREATE INDEX memory_access_log_app_idx ON memory_access_log (app_id)")

    op.execute(
        """
        CREATE TABLE personal_access_tokens (
            id uuid PRIMARY KEY,
            owner_email text NOT NULL REFERENCES users (email) ON DELETE CASCADE,
            name text NOT NULL,
            token_prefix text NOT NULL,
            token_hash bytea NOT NULL UNIQUE,
            scopes text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            last_used_at timestamptz,
            revoked_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX personal_access_tokens_owner_idx ON personal_access_tokens (owner_email)")

    # Engram's own signing keys; the private half is encrypted with a key the database never sees.
    op.execute(
        """
        CREATE TABLE signing_keys (
            kid text PRIMARY KEY,
            algorithm text NOT NULL,
            private_key_encrypted bytea NOT NULL,
            public_jwk jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            retired_at timestamptz
        )
        """
    )

    op.execute(
        """
        CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor_email text,
            subject_email text,
            client_id text,
            request_id text,
            table_name text,
            operation text NOT NULL,
            row_id text,
            before jsonb,
            after jsonb,
            db_user text NOT NULL DEFAULT session_user
        )
        """
    )
    op.execute("CREATE INDEX audit_log_subject_idx ON audit_log (subject_email, at)")
    op.execute("CREATE INDEX audit_log_at_idx ON audit_log (at)")
    op.execute("CREATE INDEX audit_log_row_idx ON audit_log (row_id)")

    for table in USER_TABLES:
        owner_column = "email" if table == "users" else "owner_email"
        isolate_by_owner(table, owner_column)

    # Audit rows: users read their own, the auditor reads all, nobody but the trigger writes.
    op.execute("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_log FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY audit_log_own ON audit_log FOR SELECT TO PUBLIC "
        "USING (subject_email = current_setting('app.user_email', true))"
    )
    op.execute(
        "CREATE POLICY audit_log_maintenance ON audit_log FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true)"
    )
    if auditor:
        op.execute(f"CREATE POLICY audit_log_auditor ON audit_log FOR SELECT TO {q(auditor)} USING (true)")
        op.execute(f"GRANT SELECT ON audit_log TO {q(auditor)}")
        op.execute(f"GRANT SELECT ON engram_meta TO {q(auditor)}")

    _audit_functions()

    op.execute(f"REVOKE ALL ON audit_log FROM {q(runtime)}")
    for table in USER_TABLES:
        grant_runtime("SELECT, INSERT, UPDATE, DELETE", table)
    grant_runtime("SELECT", "audit_log")
    grant_runtime("SELECT", "engram_meta")
    grant_runtime("SELECT, INSERT, UPDATE", "signing_keys")
    grant_runtime("SELECT", "alembic_version")
    op.execute(f"GRANT EXECUTE ON FUNCTION engram_resolve_pat(bytea) TO {q(runtime)}")
    op.execute(f"GRANT EXECUTE ON FUNCTION engram_audit_event(text, text, text, jsonb) TO {q(runtime)}")


def _audit_functions() -> None:
    # Who did it comes from the transaction's bound identity; SECURITY DEFINER lets the trigger
    # write to a table the runtime role cannot write to.
    op.execute(
        """
        CREATE FUNCTION engram_audit_row() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        DECLARE
            hidden text[] := string_to_array(TG_ARGV[0], ',');
            touch_only text[] := string_to_array(TG_ARGV[1], ',');
            owner_column text := TG_ARGV[2];
            old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
            new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
            operation text := TG_OP;
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF (old_row - hidden - touch_only) = (new_row - hidden - touch_only)
                   AND old_row -> 'content_hash' IS NOT DISTINCT FROM new_row -> 'content_hash'
                   AND old_row -> 'embedding' IS NOT DISTINCT FROM new_row -> 'embedding' THEN
                    RETURN NEW;
                END IF;
                IF old_row ? 'state' AND old_row -> 'state' <> new_row -> 'state' THEN
                    operation := 'STATE';
                END IF;
            END IF;
            INSERT INTO audit_log (actor_email, subject_email, client_id, request_id, table_name,
                                   operation, row_id, before, after)
            VALUES (
                nullif(current_setting('app.user_email', true), ''),
                coalesce(new_row ->> owner_column, old_row ->> owner_column),
                nullif(current_setting('app.client_id', true), ''),
                nullif(current_setting('app.request_id', true), ''),
                TG_TABLE_NAME,
                operation,
                coalesce(new_row ->> (CASE WHEN TG_TABLE_NAME = 'users' THEN 'email' ELSE 'id' END),
                         old_row ->> (CASE WHEN TG_TABLE_NAME = 'users' THEN 'email' ELSE 'id' END)),
                old_row - hidden,
                CASE WHEN TG_OP = 'UPDATE' AND old_row -> 'content_hash' IS DISTINCT FROM new_row -> 'content_hash'
                     THEN (new_row - hidden) || '{"content_changed": true}'::jsonb
                     ELSE new_row - hidden END
            );
            RETURN coalesce(NEW, OLD);
        END
        $$
        """
    )
    triggers = {
        # table: (columns never copied into the audit, columns whose change alone is not audited, owner)
        # embedding_next* exist only while `engram reembed` runs.
        "memories": (
            # content_hash too: unsalted, it would let an auditor confirm a guessed text.
            "embedding,content,content_hash,content_tsv,embedding_next,embedding_next_hash",
            "updated_at,embedding_next,embedding_next_hash",
            "owner_email",
        ),
        "users": ("", "last_seen_at,memory_count", "email"),
        "apps": ("", "last_seen_at", "owner_email"),
        "personal_access_tokens": ("token_hash", "last_used_at", "owner_email"),
    }
    for table, (hidden, touch_only, owner_column) in triggers.items():
        op.execute(
            f"CREATE TRIGGER {table}_audit AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION engram_audit_row('{hidden}', '{touch_only}', '{owner_column}')"
        )

    # Keeps users.memory_count exact; search routes on it (exact scan vs HNSW).
    op.execute(
        """
        CREATE FUNCTION engram_count_memories() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE users SET memory_count = memory_count + 1 WHERE email = NEW.owner_email;
            ELSIF TG_OP = 'DELETE' THEN
                UPDATE users SET memory_count = memory_count - 1 WHERE email = OLD.owner_email;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER memories_count AFTER INSERT OR DELETE ON memories "
        "FOR EACH ROW EXECUTE FUNCTION engram_count_memories()"
    )

    # Personal access tokens are looked up by hash before anyone is bound; this function is the
    # one narrow door for that, and it records the use (at most once a minute per token).
    op.execute(
        """
        CREATE FUNCTION engram_resolve_pat(token_hash bytea)
        RETURNS TABLE (id uuid, owner_email text, name text, scopes text[], expires_at timestamptz,
                       revoked_at timestamptz)
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            UPDATE personal_access_tokens t SET last_used_at = now()
             WHERE t.token_hash = engram_resolve_pat.token_hash
               AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute');
            SELECT t.id, t.owner_email, t.name, t.scopes, t.expires_at, t.revoked_at
              FROM personal_access_tokens t
             WHERE t.token_hash = engram_resolve_pat.token_hash;
        $$
        """
    )
    # Application-level events (sign-ins, refused tokens, exports) into the same append-only log.
    op.execute(
        """
        CREATE FUNCTION engram_audit_event(operation text, subject_email text, row_id text, detail jsonb)
        RETURNS void
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            INSERT INTO audit_log (actor_email, subject_email, client_id, request_id, table_name,
                                   operation, row_id, after)
            VALUES (nullif(current_setting('app.user_email', true), ''), lower(subject_email),
                    nullif(current_setting('app.client_id', true), ''),
                    nullif(current_setting('app.request_id', true), ''),
                    NULL, operation, row_id, detail);
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION engram_resolve_pat(bytea) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION engram_audit_event(text, text, text, jsonb) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION engram_audit_row() FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION engram_count_memories() FROM PUBLIC")


def downgrade() -> None:
    for table in [
        "memory_access_log",
        "memory_history",
        "memories",
        "personal_access_tokens",
        "apps",
        "users",
    ]:
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP TABLE audit_log")
    op.execute("DROP TABLE signing_keys")
    op.execute("DROP TABLE engram_meta")
    op.execute("DROP FUNCTION engram_audit_event(text, text, text, jsonb)")
    op.execute("DROP FUNCTION engram_resolve_pat(bytea)")
    op.execute("DROP FUNCTION engram_count_memories()")
    op.execute("DROP FUNCTION engram_audit_row()")
