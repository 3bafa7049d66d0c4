from app.embeddings import create_embedder, known_dimensions
from app.embeddings.local import LocalEmbedder
from app.embeddings.openai import OpenAIEmbedder
from app.settings import Settings


def test_create_embedder_picks_the_configured_provider() -> None:
    local = create_embedder(Settings())
    remote = create_embedder(Settings(embedding_provider="openai", embedding_model="text-embedding-3-small"))
    assert isinstance(local, LocalEmbedder)
    assert (local.provider, local.model) == ("local", "all-MiniLM-L6-v2")
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.provider, remote.model) == ("openai", "text-embedding-3-small")


def test_known_dimensions_without_loading_anything() -> None:
    assert known_dimensions(Settings()) == 384
    assert known_dimensions(Settings(embedding_model="/models/other")) is None
    assert known_dimensions(Settings(embedding_model="/models/other", embedding_dimensions=768)) == 768
    assert known_dimensions(Settings(embedding_provider="openai", embedding_model="m")) is None
    assert known_dimensions(Settings(embedding_provider="openai", embedding_dimensions=1536)) == 1536
