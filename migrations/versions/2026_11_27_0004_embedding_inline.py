"""Keep embeddings inline in the memory row (storage MAIN instead of EXTENDED).

A 384-dimension vector takes 1,544 bytes; with the text, tags, metadata and the stored tsvector a
row often passes PostgreSQL's 2 kB TOAST threshold, and the toaster then moves the largest value —
the embedding — out of line. Every distance computation of an exact per-user scan then costs a
TOAST index lookup and a second heap fetch: measured on the benchmark data, 815 buffer hits and
0.91 ms for a 500-memory user with the default storage, 127 hits and 0.47 ms with MAIN. MAIN keeps
the vector in the row and lets PostgreSQL move the text and tsvector out first (it still moves the
vector out as a last resort, so very large vectors keep working).

Rows written before this revision keep their out-of-line vectors until they are rewritten
(`engram reembed` rewrites every row).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN")


def downgrade() -> None:
    op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE EXTENDED")
