"""How embeddings travel between Engram and PostgreSQL: pgvector's binary format, not text.

pgvector's SQLAlchemy type formats every vector as text (`[0.0123,…]`): 384 floats cost about
0.2 ms to format per search and as much again for PostgreSQL to parse. Instead every connection
gets an asyncpg codec for the `vector` type in binary format, and `BinaryVector` hands arrays to
it untouched. Text still works as input (`CAST(:v AS vector)` with a string), so SQL written by
hand keeps working.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pgvector import Vector
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import Dialect

_VECTOR_SCHEMA = (
    "SELECT n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE t.typname = 'vector' ORDER BY n.nspname = 'public' DESC LIMIT 1"
)


def _encode(value: Any) -> bytes:
    if isinstance(value, str):
        return Vector.from_text(value).to_binary()
    if isinstance(value, Vector):
        return value.to_binary()
    return Vector(np.asarray(value, dtype=np.float32)).to_binary()


def _decode(data: bytes) -> np.ndarray:
    return Vector.from_binary(data).to_numpy()


async def register_vector_codec(connection: Any) -> None:
    """On a new asyncpg connection: the binary codec, where the extension is installed (the admin
    engine may connect before the first migration creates it)."""
    schema = await connection.fetchval(_VECTOR_SCHEMA)
    if schema is not None:
        await connection.set_type_codec("vector", schema=schema, encoder=_encode, decoder=_decode, format="binary")


class BinaryVector(VECTOR):
    """pgvector's column type, its values passed to the connection's binary codec as they are:
    numpy arrays (or lists) going in, float32 numpy arrays coming out."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        return None

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        return None
