"""The dashboard: how many memories, which clients, 30 days of activity, the latest changes."""

from __future__ import annotations

from litestar import get
from litestar.response import Template

from app.apps.service import list_apps
from app.ui import activity, chart
from app.ui.web import WEB_CLIENT_ID, Web, render


@get("/", include_in_schema=False)
async def dashboard(web: Web) -> Template:
    stats = await web.memories().stats()
    apps = [a for a in await list_apps(web.session) if a.client_id != WEB_CLIENT_ID]
    return render(
        web,
        "dashboard.html",
        {
            "stats": stats,
            "clients": apps,
            "chart": chart.build(stats.last_30_days),
            "activity": await activity.recent(web.session),
        },
        nav="dashboard",
    )
