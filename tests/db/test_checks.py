"""Start-up checks on the embedding configuration."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.checks import SchemaMismatch, check_embedding_model, stored_embedding_dimensions, stored_embedding_model


async def test_stored_embedding_facts(runtime_engine: AsyncEngine) -> None:
    assert await stored_embedding_dimensions(runtime_engine) == 384
    assert await stored_embedding_model(runtime_engine) == "all-MiniLM-L6-v2"


def test_a_different_dimension_names_both_numbers_and_the_fix() -> None:
    with pytest.raises(SchemaMismatch) as caught:
        check_embedding_model("all-MiniLM-L6-v2", 384, 1536, "text-embedding-3-small")
    message = str(caught.value)
    assert "384" in message
    assert "1536" in message
    assert "engram reembed" in message


def test_a_different_model_of_the_same_size_is_refused_too() -> None:
    with pytest.raises(SchemaMismatch, match="not comparable"):
        check_embedding_model("all-MiniLM-L6-v2", 384, 384, "other-384-model")
    check_embedding_model("all-MiniLM-L6-v2", 384, 384, "all-MiniLM-L6-v2")
