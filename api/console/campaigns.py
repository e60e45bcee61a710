"""The console's campaigns (``/console/campaigns``): the newest campaigns, a form to compose one in
Russian and English with a live SMS part counter, to aim it at a saved segment (less the segments it
excludes), schedule it and hold out a control group; and a campaign's results against that group.

The form becomes the admin API's :class:`notifications.campaigns.CampaignInput`; creating, listing,
showing and the report are :mod:`notifications.campaigns`' own functions, and the part counter is the
one the campaign's validation uses (:func:`notifications.templates.sms_segments`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from analytics import segments
from api.console.kit import (
    app_services,
    back_with_notice,
    current_staff,
    explain_validation,
    language,
    render,
    sessions_of,
    signed_in,
    stale_form,
    status_of,
    transaction,
    whole_number,
)
from api.console.session import PATH
from api.console.texts import text
from kartka.bounds import INT64_MAX
from kartka.errors import DomainError
from kartka.staff import Permission
from kartka.texts import format_percent
from notifications import campaigns
from notifications.campaigns import MAX_SMS_PARTS, CampaignInput
from notifications.templates import sms_segments
from wallet.money import parse_points
from wallet.program import Program

CAMPAIGNS: Final = f"{PATH}/campaigns"
LANGS: Final = ("ru", "en")
CHANNELS: Final = ("sms", "viber")
_PAGE: Final = 20
"""Campaigns on a page of the list."""
#: What a part of a long message carries, and a message of one part, per encoding.
PER_PART: Final = {"GSM-7": (160, 153), "UCS-2": (70, 67)}
Form = Mapping[str, Sequence[str]]


def _one(form: Form, name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()


class _Unreadable(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def campaign_of(form: Form, program: Program) -> dict[str, Any]:
    """The compose form as the admin API's campaign (JSON-shaped; :class:`CampaignInput` checks it)."""
    body: dict[str, Any] = {
        "name": _one(form, "name"),
        "texts": {lang: value for lang in LANGS if (value := (form.get(f"text_{lang}") or [""])[0].strip())},
        "channels": [c for c in CHANNELS if c in form.get("channels", ())],
    }
    segment: dict[str, Any] = {}
    if _one(form, "segment"):
        segment["id"] = _one(form, "segment")
    exclude = [v for v in form.get("exclude", ()) if v]
    if exclude:
        segment["exclude"] = exclude
    body["segment"] = segment
    start = _one(form, "start_at")
    if start:
        try:
            body["start_at"] = datetime.fromisoformat(start).replace(tzinfo=program.zone).isoformat()
        except ValueError:
            raise _Unreadable("start_at") from None
    rate = _one(form, "rate_per_minute")
    if rate:
        per_minute = whole_number(rate, at_most=999_999_999)
        if per_minute is None:
            raise _Unreadable("rate_per_minute")
        body["rate_per_minute"] = per_minute
    share = _one(form, "control_share")
    if share:
        try:
            body["control_share_bp"] = parse_points(share)  # a percentage to two decimals: basis points
        except ValueError:
            raise _Unreadable("control_share") from None
    return body


def parts(lang: str, message: str) -> dict[str, Any]:
    """What the part counter shows for ``message``: its encoding, length and parts (the domain's count)."""
    counted = sms_segments(message)
    single, multi = PER_PART[counted.encoding]
    return {
        "lang": lang,
        "encoding": counted.encoding,
        "units": counted.units,
        "parts": counted.parts,
        "per_part": single if counted.parts == 1 else multi,
        "too_long": counted.parts > MAX_SMS_PARTS,
        "max_parts": MAX_SMS_PARTS,
    }


class ConsoleCampaignController(Controller):
    path = CAMPAIGNS
    include_in_schema = False
    before_request = signed_in(Permission.CAMPAIGNS)

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Template:
        """The newest campaigns, a page at a time (``?before=<id>``: the ones older than that one)."""
        services = app_services(request)
        before = whole_number(request.query_params.get("before", "")) or None
        async with services.pool.acquire() as conn:
            # One more than a page: whether an "older" link leads anywhere.
            recent = await campaigns.list_recent(conn, services.clock.now(), limit=_PAGE + 1, before=before)
        older = recent[_PAGE - 1].id if len(recent) > _PAGE else None
        return render(request, "console/campaigns/list.html", campaigns=recent[:_PAGE], older=older, paged=before)

    async def _compose(
        self, request: Request[Any, Any, State], form: Form, *, status: int = 200, error: str | None = None
    ) -> Template:
        async with app_services(request).pool.acquire() as conn:
            saved = await segments.list_all(conn)
        counters = {lang: parts(lang, (form.get(f"text_{lang}") or [""])[0]) for lang in LANGS}
        return render(
            request,
            "console/campaigns/compose.html",
            status=status,
            form=form,
            error=error,
            saved=saved,
            counters=counters,
            langs=LANGS,
            channels=CHANNELS,
        )

    @get("/new", media_type="text/html")
    async def new(
        self,
        request: Request[Any, Any, State],
        segment: Annotated[str, QueryParameter(max_length=64)] = "",
    ) -> Template:
        return await self._compose(request, {"segment": [segment], "channels": list(CHANNELS)})

    @get("/parts", media_type="text/html")
    async def count_parts(
        self,
        request: Request[Any, Any, State],
        of: Annotated[str, QueryParameter(pattern="^(ru|en)$")] = "ru",
    ) -> Template:
        """The part counter of one text as it is typed (htmx): the text in language ``of`` comes as
        ``text_<of>`` (``lang`` is the console's own language)."""
        message = request.query_params.get(f"text_{of}", "")[:2000]
        return render(request, "console/campaigns/parts.html", c=parts(of, message))

    @post("/", media_type="text/html", status_code=200)
    async def create(self, request: Request[Any, Any, State]) -> Response[Any]:
        services = app_services(request)
        lang = language(request)
        raw = await request.form()
        form = {key: raw.getall(key) for key in raw}
        session = current_staff(request)
        if not sessions_of(request).accepts(request, _one(form, "csrf_token"), session):
            return stale_form(request)
        try:
            data = msgspec.convert(campaign_of(form, services.program), CampaignInput)
        except _Unreadable as exc:
            error = text(lang, "cmp.unreadable", field=text(lang, f"cmp.{exc.field}"))
            return await self._compose(request, form, status=422, error=error)
        except msgspec.ValidationError as exc:
            return await self._compose(request, form, status=422, error=_explain(lang, exc))
        if data.segment.id is None:
            return await self._compose(request, form, status=422, error=text(lang, "cmp.no_segment"))
        try:
            async with transaction(request) as tx:
                campaign_id = await campaigns.create(
                    tx, data, program=services.program, now=services.clock.now(), created_by=f"staff:{session.staff}"
                )
        except DomainError as exc:
            error = text(lang, "error", message=exc.message)
            return await self._compose(request, form, status=status_of(exc), error=error)
        return back_with_notice(request, f"{CAMPAIGNS}/{campaign_id}", text(lang, "cmp.created", name=data.name))

    @get("/{campaign_id:int}", media_type="text/html")
    async def show(
        self,
        campaign_id: Annotated[int, PathParameter(ge=1, le=INT64_MAX)],
        request: Request[Any, Any, State],
    ) -> Response[Any]:
        services = app_services(request)
        now = services.clock.now()
        try:
            async with services.pool.acquire() as conn:
                campaign = await campaigns.get(conn, campaign_id, now)
                report = (
                    await campaigns.report(conn, campaign_id, days=campaigns.REPORT_DAYS, now=now)
                    if current_staff(request).may(Permission.REPORTS)
                    else None
                )
        except DomainError as exc:
            return render(request, "console/message.html", status=status_of(exc), title="notfound.title", body=None)
        lang = language(request)
        return render(
            request,
            "console/campaigns/show.html",
            campaign=campaign,
            report=report,
            percent=lambda fraction: f"{format_percent(round(fraction * 10_000), lang)}\u00a0%",
            points_diff=lambda fraction: text(
                lang, "cmp.pp", value=_signed(format_percent(round(fraction * 10_000), lang))
            ),
        )


def _signed(number: str) -> str:
    return number if number.startswith("-") or number == "0" else f"+{number}"


#: Fields of the campaign the console names in its own words when the campaign's checks refuse them.
_FIELDS: Final = {
    "name": "cmp.name",
    "texts": "cmp.text_ru",
    "channels": "cmp.channels",
    "segment": "cmp.segment",
    "start_at": "cmp.start_at",
    "rate_per_minute": "cmp.rate_per_minute",
    "control_share_bp": "cmp.control_share",
}


def _explain(lang: str, exc: msgspec.ValidationError) -> str:
    """The campaign's own check, named by the form's field (the control share in percent, as typed)."""
    field, message = explain_validation(lang, exc)
    if field == "control_share_bp":
        return text(lang, "cmp.bad_share")
    return text(lang, "cmp.invalid", field=text(lang, _FIELDS[field]), message=message) if field in _FIELDS else message
