"""Logos: the vendored simple-icons SVGs and the monogram badges drawn for the rest."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from app.connect import CLIENTS, Client, get, logo_svg
from app.connect.logos import LOGO_DIR, PALETTE, initials, monogram_color

SVG = "{http://www.w3.org/2000/svg}"
VENDORED = {"claude", "claude-code", "cursor", "cline", "windsurf", "gemini-cli", "mcp"}


def _luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.id)
def test_every_client_has_a_parseable_svg_logo_with_a_title(client: Client) -> None:
    markup = logo_svg(client.id)
    root = ET.fromstring(markup)  # noqa: S314 - our own files, parsed in a test
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == "0 0 24 24"
    assert root.find(f"{SVG}title") is not None
    assert not re.search(r"<script|on\w+=", markup), "nothing executable in a logo"
    assert all(ord(ch) < 0x2000 for ch in markup), "no emoji"


def test_vendored_logos_are_the_ones_simple_icons_has() -> None:
    assert {c.id for c in CLIENTS if c.logo} == VENDORED
    files = {p.name for p in LOGO_DIR.glob("*.svg")}
    assert files == {c.logo for c in CLIENTS if c.logo}
    readme = (LOGO_DIR / "README.md").read_text()
    assert "16.37.0" in readme
    assert "CC0" in readme


def test_monograms_for_the_rest() -> None:
    assert initials(get("roo-code")) == "RC"
    assert initials(get("factory-droid")) == "FD"
    assert initials(get("witsy")) == "W"
    assert initials(get("vscode")) == "VS"
    markup = logo_svg("roo-code")
    assert ">RC</text>" in markup
    assert monogram_color(get("roo-code")) in markup


def test_monogram_colours_are_stable_and_readable() -> None:
    # The same colour on every run and machine: it comes from a hash of the id, not from hash().
    assert monogram_color(get("augment")) == monogram_color(get("augment"))
    assert all(monogram_color(c) in PALETTE for c in CLIENTS)
    for colour in PALETTE:
        contrast = (1.0 + 0.05) / (_luminance(colour) + 0.05)
        assert contrast >= 4.5, f"white on {colour} is {contrast:.2f}:1"
