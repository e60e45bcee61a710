"""The console's segments (``/console/segments``): saved segments with their sizes, a builder whose size
follows the rule as it changes, a segment's members a page at a time with its CSV, and the RFM grid.

The builder's form is read into the segment rule of the admin API (:class:`analytics.segments.Rule`);
what the console cannot read (a word where a number goes) and what the rule's own checks refuse are
shown beside the size. Counting, listing, saving and exporting are :mod:`analytics.segments`' and the
grid is :mod:`analytics.segments_report`'s, exactly as the admin API calls them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream, Template

from analytics import segments, segments_report
from analytics.segments import LIFECYCLE_ORDER, Rule, Segment, SegmentInput
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
)
from api.console.session import PATH
from api.console.texts import TEXTS, text
from kartka.errors import DomainError
from kartka.staff import Permission
from wallet.models import Source
from wallet.money import parse_points
from wallet.program import Program
from wallet.stores import list_stores

SEGMENTS: Final = f"{PATH}/segments"
#: Shoppers on a page of a segment's members.
MEMBERS_PAGE: Final = 20
#: Form fields holding many values (checkboxes), and the rule field each becomes.
_LISTS: Final = ("tiers", "sources", "home_stores", "rfm", "lifecycle", "any_of", "none_of")
#: Range fields: the form's ``<name>_min`` / ``<name>_max`` and how their text is read.
_MONEY: Final = ("spend_365d", "balance")
_COUNTS: Final = ("orders_365d", "rfm_r", "rfm_f", "rfm_m")
_FLAGS: Final = ("consent_marketing", "has_wallet_pass")
Form = Mapping[str, Sequence[str]]


class _Unreadable(Exception):
    """A form value the console could not read, named by its field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _one(form: Form, name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()


def _version(form: Form) -> datetime | str:
    """What the person saw when they opened the builder: a new segment, or the one saved at that time.
    A form without it (or with a forged one) may only create."""
    raw = _one(form, "version")
    try:
        return datetime.fromisoformat(raw) if raw and raw != segments.NEW else segments.NEW
    except ValueError:
        return segments.NEW


def _number(form: Form, name: str, money: bool) -> int | None:
    raw = _one(form, name)
    if not raw:
        return None
    try:
        return parse_points(raw) if money else int(raw)
    except ValueError:
        raise _Unreadable(name) from None


def _day(form: Form, name: str, program: Program) -> str | None:
    raw = _one(form, name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise _Unreadable(name) from None
    return datetime.combine(day, time(), tzinfo=program.zone).isoformat()


def rule_of(form: Form, program: Program) -> dict[str, Any]:
    """The builder's form as the admin API's rule (JSON-shaped; :class:`Rule` checks it)."""
    rule: dict[str, Any] = {}
    for name in _LISTS:
        values = [v for v in form.get(name, ()) if v]
        if values:
            rule[name] = values
    for name in (*_MONEY, *_COUNTS):
        bounds = {
            end: value
            for end in ("min", "max")
            if (value := _number(form, f"{name}_{end}", name in _MONEY)) is not None
        }
        if bounds:
            rule[name] = bounds
    days = {
        key: value
        for key, field in (("days_ago_min", "days_min"), ("days_ago_max", "days_max"))
        if (value := _number(form, field, False)) is not None
    }
    if days:
        rule["last_purchase"] = days
    registered = {
        key: moment
        for key, field in (("after", "registered_after"), ("before", "registered_before"))
        if (moment := _day(form, field, program)) is not None
    }
    if registered:
        rule["registered"] = registered
    birthday = _number(form, "birthday_within_days", False)
    if birthday is not None:
        rule["birthday_within_days"] = birthday
    for name in _FLAGS:
        answer = _one(form, name)
        if answer in ("yes", "no"):
            rule[name] = answer == "yes"
    return rule


def form_of(rule: Rule, program: Program) -> dict[str, list[str]]:
    """A saved rule back in the builder's fields (to change a segment)."""
    built: dict[str, Any] = msgspec.to_builtins(rule)
    form: dict[str, list[str]] = {}
    for name in _LISTS:
        if name in built:
            form[name] = [str(v) for v in built[name]]
    for name in (*_MONEY, *_COUNTS):
        for end, value in built.get(name, {}).items():
            form[f"{name}_{end}"] = [f"{value / 100:.2f}" if name in _MONEY else str(value)]
    for key, field in (("days_ago_min", "days_min"), ("days_ago_max", "days_max")):
        if key in built.get("last_purchase", {}):
            form[field] = [str(built["last_purchase"][key])]
    for key, field in (("after", "registered_after"), ("before", "registered_before")):
        moment = getattr(rule.registered, key) if rule.registered is not None else None
        if moment is not None:
            form[field] = [moment.astimezone(program.zone).date().isoformat()]
    if rule.birthday_within_days is not None:
        form["birthday_within_days"] = [str(rule.birthday_within_days)]
    for name in _FLAGS:
        if name in built:
            form[name] = ["yes" if built[name] else "no"]
    return form


#: Form fields named otherwise than the rule's field they make.
_FIELDS: Final = {
    "days_min": "last_purchase",
    "days_max": "last_purchase",
    "registered_after": "registered",
    "registered_before": "registered",
}


def _read(lang: str, form: Form, program: Program) -> tuple[Rule | None, str | None]:
    """The rule, or the reason it cannot be one, in the person's words where the console knows the field."""
    try:
        return msgspec.convert(rule_of(form, program), Rule), None
    except _Unreadable as exc:
        field = _FIELDS.get(exc.field, re.sub(r"_(min|max)$", "", exc.field))
        return None, text(lang, "seg.unreadable", field=text(lang, f"seg.field.{field}"))
    except msgspec.ValidationError as exc:
        field, message = explain_validation(lang, exc)
        label = text(lang, f"seg.field.{field}") if field else ""
        return None, text(lang, "seg.invalid", field=label, message=message) if label else message


class ConsoleSegmentController(Controller):
    path = SEGMENTS
    include_in_schema = False
    before_request = signed_in(Permission.CAMPAIGNS)

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Template:
        async with app_services(request).pool.acquire() as conn:
            saved = await segments.list_all(conn)
        return render(request, "console/segments/list.html", saved=saved)

    async def _builder(
        self,
        request: Request[Any, Any, State],
        form: Form,
        *,
        status: int = 200,
        error: str | None = None,
        editing: Segment | None = None,
    ) -> Template:
        """The builder with ``form`` in its fields and the size of the rule they make."""
        services = app_services(request)
        lang = language(request)
        async with services.pool.acquire() as conn:
            saved = await segments.list_all(conn)
            stores = await list_stores(conn)
            preview = await self._preview(request, conn, form)
        return render(
            request,
            "console/segments/builder.html",
            status=status,
            form=form,
            error=error,
            editing=editing,
            saved=[(s.id, s.title) for s in saved if editing is None or s.id != editing.id],
            stores=[(s.code, s.name) for s in stores],
            tiers=[(tier.code, tier.name) for tier in services.program.tiers],
            rfm_names=[(name, label(lang, "rfm", name)) for name in services.program.rfm.segments],
            lifecycles=[(name, label(lang, "lc", name)) for name in LIFECYCLE_ORDER],
            sources=[(s.value, label(lang, "src", s.value)) for s in Source],
            label_of=_names(request),
            **preview,
        )

    async def _preview(self, request: Request[Any, Any, State], conn: Any, form: Form) -> dict[str, Any]:
        services = app_services(request)
        lang = language(request)
        rule, problem = _read(lang, form, services.program)
        if rule is None:
            return {"preview": None, "problem": problem}
        try:
            found = await segments.preview(conn, rule, program=services.program, now=services.clock.now())
        except DomainError as exc:
            return {"preview": None, "problem": text(lang, "error", message=exc.message)}
        return {"preview": found, "problem": None}

    @get("/new", media_type="text/html")
    async def new(self, request: Request[Any, Any, State]) -> Template:
        """The builder; its fields may come in the query (an RFM cell links here with its scores)."""
        form = {key: request.query_params.getall(key) for key in request.query_params if key != "lang"}
        return await self._builder(request, form | {"version": [segments.NEW]})

    @post("/preview", media_type="text/html", status_code=200)
    async def preview(self, request: Request[Any, Any, State]) -> Response[Any]:
        """The size and a sample of the rule the builder's fields make now (htmx, as the person types)."""
        raw = await request.form()
        form = {key: raw.getall(key) for key in raw}
        if not sessions_of(request).accepts(request, _one(form, "csrf_token"), current_staff(request)):
            return stale_form(request)
        async with app_services(request).pool.acquire() as conn:
            preview = await self._preview(request, conn, form)
        status = 200 if preview["problem"] is None else 422
        return render(
            request, "console/segments/preview.html", status=status, label_of=_names(request), oob=True, **preview
        )

    @post("/", media_type="text/html", status_code=200)
    async def save(self, request: Request[Any, Any, State]) -> Response[Any]:  # noqa: PLR0911 - one answer per refusal
        services = app_services(request)
        lang = language(request)
        raw = await request.form()
        form = {key: raw.getall(key) for key in raw}
        if not sessions_of(request).accepts(request, _one(form, "csrf_token"), current_staff(request)):
            return stale_form(request)
        segment_id, title = _one(form, "id"), _one(form, "title")
        rule, problem = _read(lang, form, services.program)
        if rule is None:
            return await self._builder(request, form, status=422, error=problem)
        if not re.fullmatch(segments.SEGMENT_ID_PATTERN.strip("^$"), segment_id):
            return await self._builder(request, form, status=422, error=text(lang, "seg.bad_id"))
        if not title:
            return await self._builder(request, form, status=422, error=text(lang, "seg.no_title"))
        session = current_staff(request)
        try:
            async with transaction(request) as tx:
                saved, _ = await segments.put(
                    tx,
                    segment_id,
                    SegmentInput(title=title[:200], rule=rule),
                    program=services.program,
                    now=services.clock.now(),
                    actor=f"staff:{session.staff}",
                    expect=_version(form),
                )
        except segments.SegmentChanged:
            message = text(lang, "seg.changed", id=segment_id)
            return await self._builder(request, form, status=409, error=message)
        except DomainError as exc:
            message = text(lang, "error", message=exc.message)
            return await self._builder(request, form, status=status_of(exc), error=message)
        return back_with_notice(
            request, f"{SEGMENTS}/{saved.id}", text(lang, "seg.saved", title=saved.title, size=saved.size)
        )

    @get("/rfm", media_type="text/html", before_request=signed_in(Permission.REPORTS))
    async def rfm(self, request: Request[Any, Any, State]) -> Template:
        async with app_services(request).pool.acquire() as conn:
            grid = await segments_report.rfm_grid(conn)
        biggest = max((c.share for c in grid.cells), default=0.0)
        rows = [grid.cells[i : i + 5] for i in range(0, 25, 5)]
        return render(request, "console/segments/rfm.html", grid=grid, rows=rows, biggest=biggest)

    @get("/{segment_id:str}", media_type="text/html")
    async def show(
        self,
        segment_id: FromPath[str],
        request: Request[Any, Any, State],
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)
        try:
            async with services.pool.acquire() as conn:
                segment = await segments.get(conn, segment_id[:64])
                page = await segments.members(
                    conn,
                    segment.id,
                    cursor=cursor,
                    limit=MEMBERS_PAGE,
                    program=services.program,
                    now=services.clock.now(),
                )
        except DomainError as exc:
            return render(request, "console/message.html", status=status_of(exc), title="notfound.title", body=None)
        return render(
            request,
            "console/segments/show.html",
            segment=segment,
            page=page,
            cursor=cursor,
            rule=describe(segment.rule, lang, services.program),
            label_of=_names(request),
        )

    @get("/{segment_id:str}/edit", media_type="text/html")
    async def edit(self, segment_id: FromPath[str], request: Request[Any, Any, State]) -> Response[Any]:
        services = app_services(request)
        try:
            async with services.pool.acquire() as conn:
                segment = await segments.get(conn, segment_id[:64])
        except DomainError as exc:
            return render(request, "console/message.html", status=status_of(exc), title="notfound.title", body=None)
        form = form_of(segment.rule, services.program) | {
            "id": [segment.id],
            "title": [segment.title],
            "version": [segment.updated_at.isoformat()],
        }
        return await self._builder(request, form, editing=segment)

    @get("/{segment_id:str}/export.csv", media_type="text/csv")
    async def export(self, segment_id: FromPath[str], request: Request[Any, Any, State]) -> Response[Any]:
        """The admin API's export, for a browser signed in to the console."""
        services = app_services(request)
        try:
            rows = await segments.export_csv(
                services.pool, segment_id[:64], program=services.program, now=services.clock.now()
            )
        except DomainError as exc:
            return render(request, "console/message.html", status=status_of(exc), title="notfound.title", body=None)
        return Stream(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="segment-{segment_id[:64]}.csv"'},
        )


def _names(request: Request[Any, Any, State]) -> Callable[[str, str], str]:
    """``name(kind, value)`` for the templates: :func:`label` in the person's language."""
    lang = language(request)
    return lambda kind, value: label(lang, kind, value)


def label(lang: str, kind: str, name: str) -> str:
    """The console's word for an RFM segment, lifecycle stage or source; the name itself where it has none
    (a program may name its own RFM segments)."""
    return TEXTS[lang].get(f"{kind}.{name}", name)


def describe(rule: Rule, lang: str, program: Program) -> list[tuple[str, str]]:
    """The rule as label and value pairs people read (money and points as they type them)."""
    lines: list[tuple[str, str]] = []
    for name, value in msgspec.to_builtins(rule).items():
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            shown = " · ".join(
                f"{text(lang, 'seg.' + key)} {f'{v / 100:.2f}' if name in _MONEY else _instant(v, program)}"
                for key, v in value.items()
            )
        elif isinstance(value, bool):
            shown = text(lang, "yes" if value else "no")
        else:
            shown = str(value)
        lines.append((text(lang, f"seg.field.{name}"), shown))
    return lines


def _instant(value: object, program: Program) -> str:
    if isinstance(value, str) and "T" in value:
        return datetime.fromisoformat(value).astimezone(program.zone).date().isoformat()
    return str(value)
