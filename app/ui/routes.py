"""The UI's one router: every page, the signed-in user dependency, and error pages instead of JSON."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from app.ui import clients, connect, dashboard, memories, memory, tokens, transfer
from app.ui.web import EXCEPTION_HANDLERS, provide_web

ui_router = Router(
    path="/",
    route_handlers=[
        dashboard.dashboard,
        memories.memories_page,
        memories.bulk,
        memories.new_memory,
        memories.create_memory,
        transfer.transfer_page,
        transfer.export,
        transfer.import_memories,
        memory.memory_page,
        memory.edit_memory,
        memory.change_state,
        memory.confirm_delete,
        memory.delete_memory,
        clients.clients_page,
        clients.pause_client,
        clients.revoke_client,
        connect.connect_page,
        connect.connect_token,
        tokens.tokens_page,
        tokens.create_token,
        tokens.revoke_token,
        tokens.revoke_grant,
    ],
    dependencies={"web": Provide(provide_web)},
    exception_handlers=EXCEPTION_HANDLERS,
    include_in_schema=False,
)
