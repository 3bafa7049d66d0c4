"""Settings: parsed from ENGRAM_* variables with clear errors, and documented in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings, render_configuration_doc

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_configuration_doc_is_in_sync() -> None:
    assert DOC.read_text() == render_configuration_doc(), (
        "docs/configuration.md is stale: run `engram config docs > docs/configuration.md`"
    )


def test_every_setting_is_documented() -> None:
    text = render_configuration_doc()
    assert "ENGRAM_DATABASE_URL" in text
    assert "ENGRAM_TRUSTED_ISSUERS" in text
    for line in text.splitlines():
        if line.startswith("| `ENGRAM_"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells[4].strip()) > 10, line


def test_values_are_parsed_from_the_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('ENGRAM_PORT=9000\nENGRAM_LOG_LEVEL="debug"\n# comment\nENGRAM_ALLOWED_DOMAINS=a.com\n')
    settings = load_settings(
        {
            "ENGRAM_ALLOWED_DOMAINS": "example.com, example.org",
            "ENGRAM_MERGE_NEAR_DUPLICATES": "yes",
            "ENGRAM_TRUSTED_ISSUERS": '[{"issuer": "https://id.example.com/", "audiences": ["engram"]}]',
        },
        dotenv=dotenv,
    )
    assert settings.port == 9000
    assert settings.log_level == "debug"
    # The environment wins over the .env file.
    assert settings.allowed_domains == ["example.com", "example.org"]
    assert settings.merge_near_duplicates is True
    assert settings.trusted_issuers[0].issuer == "https://id.example.com/"
    assert settings.trusted_issuers[0].email_claim == "email"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ENGRAM_PORT", "eighty", "ENGRAM_PORT must be a number"),
        ("ENGRAM_EMBEDDING_PROVIDER", "cohere", "ENGRAM_EMBEDDING_PROVIDER must be one of local, openai"),
        ("ENGRAM_MERGE_NEAR_DUPLICATES", "maybe", "must be true or false"),
        ("ENGRAM_TRUSTED_ISSUERS", '[{"issuer": 1}]', "not a valid JSON list of issuers"),
        ("ENGRAM_PUBLIC_URL", "https://engram.example.com/", "must not end with a slash"),
        ("ENGRAM_NEAR_DUPLICATE_THRESHOLD", "1.5", "must be in (0, 1]"),
        ("ENGRAM_HNSW_EF_SEARCH", "2000", "between 1 and 1000"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_settings({variable: value}, dotenv=tmp_path / "missing.env")
