"""The development inbox: what the development provider "sent" (mounted outside production only)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import QueryParameter

from api.errors import problems
from api.state import services_of
from kartka.errors import NotFound
from kartka.settings import SmsProvider, ViberProvider
from notifications.providers.dev import InboxEntry, read_inbox


class DevInboxController(Controller):
    """What the development provider stored (mounted outside production only)."""

    path = "/dev/inbox"
    tags = ["development"]  # noqa: RUF012

    @get(
        "/",
        operation_id="devInbox",
        summary="Messages the development provider 'sent' to a phone (E.164) or device token, newest first",
        responses=problems(404),
    )
    async def inbox(
        self,
        to: Annotated[str, QueryParameter(min_length=3, max_length=4096)],
        request: Request[Any, Any, State],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> list[InboxEntry]:
        settings = services_of(request.app.state).settings
        if SmsProvider.DEV is not settings.sms_provider and ViberProvider.DEV is not settings.viber_provider:
            raise NotFound("the development provider is not in use; messages went to real providers")
        recipient = to.strip()
        if recipient.isdigit() and len(recipient) <= 15:  # a phone whose '+' arrived unescaped (as a space)
            recipient = "+" + recipient
        return await read_inbox(services_of(request.app.state).pool, recipient, limit=limit)
