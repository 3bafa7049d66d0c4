"""Server-rendered pages of the sign-in flow, with strict security headers."""

from __future__ import annotations

from typing import Any

from litestar.response import Template

from app.services import Services

BASE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def page(
    template: str,
    context: dict[str, Any],
    services: Services,
    *,
    status: int = 200,
    form_targets: tuple[str, ...] = (),
) -> Template:
    """A page that cannot be framed, cached or made to post anywhere but here (and `form_targets`,
    the client redirect a consent form ends in: browsers apply form-action to that redirect)."""
    form_action = " ".join(("'self'", *form_targets))
    return Template(
        template_name=template,
        context={"settings": services.settings, **context},
        status_code=status,
        headers={
            "Content-Security-Policy": f"{BASE_CSP}; form-action {form_action}",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def error_page(services: Services, title: str, message: str, *, status: int = 400) -> Template:
    return page("error.html", {"title": title, "message": message}, services, status=status)
