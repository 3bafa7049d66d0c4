"""Embedding providers: the local sentence-transformers model or an OpenAI-compatible API."""

from app.embeddings.base import Embedder, EmbeddingError, EmbeddingUnavailable, Vector
from app.embeddings.local import BUNDLED_DIMENSIONS, BUNDLED_MODEL, LocalEmbedder
from app.embeddings.openai import OpenAIEmbedder
from app.settings import Settings

__all__ = [
    "Embedder",
    "EmbeddingError",
    "EmbeddingUnavailable",
    "Vector",
    "create_embedder",
    "known_dimensions",
]


def create_embedder(settings: Settings) -> Embedder:
    """The configured provider, not yet started."""
    if settings.embedding_provider == "openai":
        return OpenAIEmbedder(settings)
    return LocalEmbedder(settings)


def known_dimensions(settings: Settings) -> int | None:
    """The vector size, when it is known without loading a model or calling an API."""
    if settings.embedding_provider == "local" and settings.embedding_model == BUNDLED_MODEL:
        return BUNDLED_DIMENSIONS
    return settings.embedding_dimensions
