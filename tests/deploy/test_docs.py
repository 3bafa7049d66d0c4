"""The documentation against the code: settings, links, client snippets and the sign-in callback.

- every `ENGRAM_*` name in README.md and docs/ is a setting in app/settings.py (or one of the two
  variables the client snippets use), and every block of `ENGRAM_*=value` lines is a configuration
  Engram accepts;
- every relative link between the documents resolves, anchors included;
- docs/clients.md shows, for every client in app/connect's table, exactly the snippets that table
  produces today, and the files and `engram connect` command that go with them;
- the identity-provider guides and the Authentik blueprint name the callback Engram really serves.

Each check is a function returning its problems, run once on the real documents and once on a
broken sample, so a check that cannot fail would show up here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.connect.clients import BRIDGE_ENV, CLIENTS, TOKEN_ENV, UnknownClient, display_path, snippet
from app.connect.clients import get as get_client
from app.connect.command import PLACEHOLDER
from app.oauth.login import sso_callback
from app.settings import Settings, SettingsError, env_name, load_settings, read_dotenv

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CLIENT_GUIDE = DOCS / "clients.md"
PROVIDER_GUIDES = ["authentik", "keycloak", "entra-id", "google", "okta", "auth0"]
BLUEPRINT = ROOT / "deploy" / "authentik" / "blueprints" / "engram.yaml"
URL = "https://engram.example.com"  # the public URL every guide uses
CALLBACK_PATH = "/oauth/callback"

SETTING_NAMES = {env_name(f.name) for f in dataclasses.fields(Settings)}
# Not settings: environment variables the client snippets make the clients read.
SNIPPET_VARIABLES = {TOKEN_ENV, BRIDGE_ENV}
# Settings that Engram only accepts together with others.
COMPANIONS = {
    "ENGRAM_OIDC_ISSUER": {"ENGRAM_OIDC_CLIENT_ID": "engram", "ENGRAM_OIDC_CLIENT_SECRET": "secret"},
    "ENGRAM_DATABASE_ADMIN_URL": {"ENGRAM_DATABASE_URL": "postgresql://engram_app:x@db/engram"},
}

_NAME = re.compile(r"(?<![A-Z0-9_])ENGRAM_[A-Z0-9_]+")  # not AUTHENTIK_ENGRAM_…
_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SNIPPET = re.compile(r"<!-- snippet ([^>]*?) -->\n```[a-z]*\n(.*?)\n```", re.DOTALL)


def markdown_files() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def _split(text: str) -> tuple[str, list[str]]:
    """The prose of a markdown text (fenced blocks blanked) and the fenced blocks' contents."""
    prose: list[str] = []
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
            prose.append("")
        elif current is not None:
            current.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


# --- settings -------------------------------------------------------------------------------------
def unknown_settings(text: str) -> list[str]:
    """`ENGRAM_*` names that are no setting; `ENGRAM_EMBEDDING_*` stands for the settings it prefixes."""
    problems = []
    for name in sorted(set(_NAME.findall(text))):
        if name.endswith("_"):
            if not any(s.startswith(name) for s in SETTING_NAMES):
                problems.append(f"{name}* matches no setting")
        elif name not in SETTING_NAMES | SNIPPET_VARIABLES:
            problems.append(f"{name} is not a setting in app/settings.py")
    return problems


def rejected_examples(text: str, scratch: Path) -> list[str]:
    """Blocks of `ENGRAM_*=value` lines that Engram would refuse to start with."""
    problems = []
    for block in _split(text)[1]:
        lines = [line for line in block.splitlines() if re.match(r"^\s*(export\s+)?ENGRAM_[A-Z0-9_]+=", line)]
        if not lines:
            continue
        env_file = scratch / "example.env"
        env_file.write_text("\n".join(lines) + "\n")
        values = {k: v for k, v in read_dotenv(env_file).items() if k in SETTING_NAMES}
        if not values:
            continue
        environ: dict[str, str] = {}
        for name, companions in COMPANIONS.items():
            if name in values:
                environ |= companions
        environ |= values
        try:
            load_settings(environ, dotenv=scratch / "absent.env")
        except SettingsError as exc:
            problems.append(f"{' '.join(sorted(values))}: {exc}")
    return problems


# --- links ----------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation out, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _split(text)[0].splitlines():
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return found


def broken_links(path: Path, text: str) -> list[str]:
    problems = []
    prose = re.sub(r"`[^`\n]*`", "", _split(text)[0])  # code spans are not links
    for target in _LINK.findall(prose):
        if _SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        if not file_part:
            if fragment not in anchors(text):
                problems.append(f"{path.name}: {target} has no heading #{fragment}")
            continue
        destination = (path.parent / file_part).resolve()
        if not destination.exists():
            problems.append(f"{path.name}: {target} does not exist")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination.read_text()):
            problems.append(f"{path.name}: {target} has no heading #{fragment}")
    return problems


# --- client snippets ------------------------------------------------------------------------------
def _sections(text: str) -> list[str]:
    return re.split(r"^## ", text, flags=re.MULTILINE)


def snippet_problems(text: str) -> list[str]:
    """Every marked snippet equals app.connect's; every client is there with its files and command."""
    problems = []
    shown: set[str] = set()
    for attributes, body in _SNIPPET.findall(text):
        fields = dict(a.split("=", 1) if "=" in a else (a, "") for a in attributes.split())
        client_id = fields.get("client", "")
        try:
            expected = snippet(
                client_id,
                url=URL,
                token=PLACEHOLDER if "token" in fields else None,
                platform=fields.get("platform", "linux"),
            ).text.rstrip("\n")
        except UnknownClient:
            problems.append(f"snippet for unknown client {client_id!r}")
            continue
        if body != expected:
            problems.append(f"snippet {attributes!r} differs from app.connect:\n{body}\n--- expected ---\n{expected}")
        if "token" not in fields:
            shown.add(client_id)
    for client in CLIENTS:
        if client.id not in shown:
            problems.append(f"{client.name} ({client.id}) has no snippet without a token")
            continue
        section = next(s for s in _sections(text) if f"<!-- snippet client={client.id} " in s)
        if f"engram connect {client.id}`" not in section:
            problems.append(f"{client.name}: the section does not give `engram connect {client.id}`")
        for _platform, relative in client.file.paths if client.file else ():
            if f"`{display_path(relative)}`" not in section:
                problems.append(f"{client.name}: the section does not name the file {display_path(relative)}")
    return problems


# --- the real documents ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_setting_named_is_in_the_reference(path: Path) -> None:
    assert unknown_settings(path.read_text()) == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_configuration_is_accepted(path: Path, tmp_path: Path) -> None:
    assert rejected_examples(path.read_text(), tmp_path) == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path, path.read_text()) == []


def test_client_guide_matches_the_connect_table() -> None:
    assert snippet_problems(CLIENT_GUIDE.read_text()) == []


def test_client_guide_has_a_section_per_client() -> None:
    headings = {m.group(2) for m in map(_HEADING.match, CLIENT_GUIDE.read_text().splitlines()) if m}
    assert {c.name for c in CLIENTS} <= headings


def test_provider_guides_give_the_callback_engram_serves() -> None:
    assert sso_callback.paths == {CALLBACK_PATH}
    for name in PROVIDER_GUIDES:
        text = (DOCS / "identity-providers" / f"{name}.md").read_text()
        assert f"{URL}{CALLBACK_PATH}" in text, f"{name}.md does not give the redirect URI {URL}{CALLBACK_PATH}"


class _BlueprintLoader(yaml.SafeLoader):
    """Reads Authentik's custom tags as (tag, value) pairs."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> tuple[str, Any]:
    if isinstance(node, yaml.SequenceNode):
        return (suffix, loader.construct_sequence(node, deep=True))
    return (suffix, loader.construct_scalar(node))


_BlueprintLoader.add_multi_constructor("!", _tagged)


def test_authentik_blueprint_redirects_to_engrams_callback() -> None:
    blueprint = yaml.load(BLUEPRINT.read_text(), Loader=_BlueprintLoader)  # noqa: S506 - SafeLoader subclass
    variable, default = blueprint["context"]["redirect_uri"][1]
    # Compose's default public URL is Engram's default one (http://127.0.0.1:8765).
    assert (variable, default) == ("AUTHENTIK_ENGRAM_REDIRECT_URI", Settings.public_url + CALLBACK_PATH)
    assert variable in (ROOT / "compose.yaml").read_text()


# --- the checks can fail --------------------------------------------------------------------------
def test_unknown_settings_are_reported() -> None:
    assert unknown_settings("set ENGRAM_OIDC_ISSUER and ENGRAM_EMBEDDING_* ") == []
    assert unknown_settings(f"`{TOKEN_ENV}` and `${{{BRIDGE_ENV}}}`") == []
    assert unknown_settings("AUTHENTIK_ENGRAM_REDIRECT_URI, ENGRAM_OIDC_TENANT, ENGRAM_NOTHING_*") == [
        "ENGRAM_NOTHING_* matches no setting",
        "ENGRAM_OIDC_TENANT is not a setting in app/settings.py",
    ]


def test_refused_example_values_are_reported(tmp_path: Path) -> None:
    good = "```\nENGRAM_OIDC_ISSUER=https://id.example.com/\nENGRAM_OIDC_REQUIRE_EMAIL_VERIFIED=true\n```\n"
    assert rejected_examples(good, tmp_path) == []
    bad = "```\nENGRAM_PUBLIC_URL=https://engram.example.com/\n```\n\n```\nENGRAM_PORT=eighty\n```\n"
    problems = rejected_examples(bad, tmp_path)
    assert len(problems) == 2
    assert "must not end with a slash" in problems[0]


def test_broken_links_and_anchors_are_reported(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "there.md").write_text("# There\n\n## The `odd` heading: yes\n")
    page = tmp_path / "page.md"
    text = (
        "[ok](sub/there.md#the-odd-heading-yes) [web](https://example.com/x.md) [self](#page)\n"
        "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) [anchor](sub/there.md#nowhere) [here](#not-here)\n\n# Page\n"
    )
    assert broken_links(page, text) == [
        "page.md: missing.md does not exist",
        "page.md: sub/there.md#nowhere has no heading #nowhere",
        "page.md: #not-here has no heading #not-here",
    ]


def test_snippets_that_drift_from_the_table_are_reported() -> None:
    real = CLIENT_GUIDE.read_text()
    drifted = real.replace(f'"url": "{URL}/mcp"', '"url": "https://engram.example.com/sse"', 1)
    assert drifted != real
    assert any("differs from app.connect" in p for p in snippet_problems(drifted))
    unknown = real + "\n<!-- snippet client=zed -->\n```\nx\n```\n"
    assert any("unknown client 'zed'" in p for p in snippet_problems(unknown))
    cursor = get_client("cursor")
    preamble, *sections = _sections(real)
    without_cursor = preamble + "".join("## " + s for s in sections if not s.startswith(cursor.name + "\n"))
    assert snippet_problems(without_cursor) == [f"{cursor.name} ({cursor.id}) has no snippet without a token"]
    assert snippet_problems("") != []
