"""Client logos: vendored simple-icons SVGs, or a monogram badge drawn from the client's initials."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from app.connect.clients import Client, get

LOGO_DIR = Path(__file__).parent / "logos"

# Dark enough for white letters to keep a contrast ratio of at least 4.5:1 (WCAG AA).
PALETTE = (
    "#1D4ED8",
    "#047857",
    "#B91C1C",
    "#6D28D9",
    "#C2410C",
    "#0F766E",
    "#BE185D",
    "#4338CA",
    "#374151",
    "#0369A1",
)


def initials(client: Client) -> str:
    if client.initials:
        return client.initials
    words = [w for w in client.name.replace("-", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def monogram_color(client: Client) -> str:
    """A colour that stays the same for a client across runs and machines."""
    digest = hashlib.sha256(client.id.encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def monogram_svg(client: Client) -> str:
    letters = escape(initials(client))
    size = 11 if len(letters) < 2 else 9.5
    return (
        '<svg role="img" viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg" '
        f"aria-label={quoteattr(client.name)}><title>{escape(client.name)}</title>"
        f'<rect width="24" height="24" rx="5" fill="{monogram_color(client)}"/>'
        f'<text x="12" y="12.5" text-anchor="middle" dominant-baseline="middle" fill="#FFFFFF" '
        f'font-family="system-ui, -apple-system, &quot;Segoe UI&quot;, Roboto, sans-serif" '
        f'font-size="{size}" font-weight="600">{letters}</text></svg>'
    )


@cache
def logo_svg(client_id: str) -> str:
    """The client's logo as SVG markup: the vendored icon, or its monogram badge."""
    client = get(client_id)
    if client.logo is None:
        return monogram_svg(client)
    return (LOGO_DIR / client.logo).read_text(encoding="utf-8")
