"""The console's promotions pages (``/console/promotions``): the list by state, the editor of every
benefit type, preview on a sample cart, backtest over a period, the life cycle with four-eyes approval,
and the change history as a readable diff.

Thin like the admin API's controller (``api.controllers.promotions``), and calling the same services:
:class:`engine.promotions.store.PromotionAdmin` for drafts, revisions and their life cycle,
:class:`engine.promotions.trial.Trials` for preview and backtest. The form is read by
``api.console.promotion_form``; whatever a promotion may be, and who may do what to it, the domain
decides, and its refusal is shown next to the field (or above the page) it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Template

from api.console import promotion_form as pf
from api.console.kit import (
    app_services,
    back_with_notice,
    current_staff,
    language,
    render,
    sessions_of,
    signed_in,
    stale_form,
    status_of,
    transaction,
    wants_partial,
)
from api.console.session import PATH
from api.console.texts import TEXTS, text
from api.controllers.promotions import PromotionId, Rejection
from api.state import Services
from engine.promotions.model import Group, Promotion, parse_group
from engine.promotions.store import ID_PATTERN, HistoryEntry, ManagedRemotely, PromotionView, Status, flatten
from engine.promotions.trial import BacktestInput, PromotionPreviewInput, Trials
from kartka.bounds import parse_day
from kartka.db import Connection
from kartka.errors import DomainError
from kartka.staff import Permission

HERE: Final = f"{PATH}/promotions"
#: The list's sections, in the order a marketer works through them: shown status → section.
SECTIONS: Final = (
    ("draft", (Status.DRAFT,)),
    ("pending_approval", (Status.PENDING_APPROVAL,)),
    ("running", (Status.ACTIVE, Status.SCHEDULED)),
    ("paused", (Status.PAUSED,)),
    ("ended", (Status.ENDED,)),
)
CART_ROWS: Final = 4
BACKTEST_DAYS: Final = 30
MODES: Final = ("exclusive", "sequential", "sum", "best")
_LISTED: Final = 500
"""Promotions the list shows at most, the latest changed first (a search finds the others)."""


def label(name: str, t: Callable[[str], str]) -> str:
    """A field of the promotion object in the person's words (``benefit.percent_bp`` → "Discount, %");
    the path itself for one the editor has no input for."""
    key = f"pf.{name}"
    if key in TEXTS["en"]:
        return t(key)
    parent, _, part = name.rpartition(".")
    if part in pf.SELECTOR_PARTS and f"pf.{parent}" in TEXTS["en"]:
        return f"{t('pf.' + parent)}: {t('pf.sel.' + part)}"
    return name


def _said(value: Any) -> str:
    if value is None or value in ("", []):
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


_SELECTOR_PARENTS: Final = (*(f"benefit.{selector}" for selector in pf.SELECTORS), "condition.lines")


def _order() -> tuple[str, ...]:
    """The order a promotion's fields are read in: its name, its benefit, then as the editor lays them
    out, each selector (``{}`` for every line) just before its parts."""
    names = ["title.ru", "title.en", *(n for n in pf.FIELDS if n.startswith("benefit."))]
    names += [n for n in pf.FIELDS if n not in names]
    order: list[str] = []
    for name in names:
        parent = name.rsplit(".", 1)[0]
        if parent in _SELECTOR_PARENTS and parent not in order:
            order.append(parent)
        order.append(name)
    return tuple(order)


ORDER: Final = _order()


def shown_value(name: str, value: Any, services: Services, t: Callable[[str], str]) -> str:  # noqa: PLR0911
    """A value of the promotion object as a person reads it (``3000`` basis points → ``30``, ISO
    weekdays as day names, an empty selector as "every line")."""
    if value is None:
        return "—"
    if value == {} and name in _SELECTOR_PARENTS:
        return t("pf.any_line")
    if name in ("benefit.type", "benefit.pick"):
        return t(f"pf.{name.split('.')[1]}.{value}")
    if name == "audience.personal":
        return t("yes" if value else "no")
    if name in ("where.channels", "when.weekdays") and isinstance(value, list | tuple):
        kind = "channel" if name == "where.channels" else "day"
        return ", ".join(t(f"pf.{kind}.{v}") for v in value)
    if pf.FIELDS.get(name) == "datetime":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.astimezone(services.program.zone).strftime("%d.%m.%Y %H:%M")
    if name in pf.FIELDS:
        return _said(pf.shown(name, value, services.program.zone))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def summary(promotion: Promotion, services: Services, t: Callable[[str], str]) -> list[tuple[str, str]]:
    """The promotion's filled-in fields, labelled, in the order people read them."""
    flat = flatten(msgspec.json.decode(msgspec.json.encode(promotion)))
    rank = {name: n for n, name in enumerate(ORDER)}
    named = sorted((name for name in flat if name != "id"), key=lambda name: (rank.get(name, len(rank)), name))
    return [(label(name, t), shown_value(name, flat[name], services, t)) for name in named]


class _Change(msgspec.Struct, frozen=True):
    field: str
    old: str
    new: str


class _Entry(msgspec.Struct, frozen=True):
    at: datetime
    by: str
    action: str
    revision: int | None
    old_status: str | None
    new_status: str | None
    changes: list[_Change]
    reason: str | None


def readable(history: list[HistoryEntry], services: Services, t: Callable[[str], str]) -> list[_Entry]:
    """The audit as people read it: newest first, each change labelled, old → new in the editor's units."""
    return [
        _Entry(
            at=entry.at,
            by=entry.by_name or entry.by,
            action=entry.action,
            revision=entry.revision,
            old_status=entry.old_status,
            new_status=entry.new_status,
            changes=[
                _Change(
                    field=label(change.field, t),
                    old=shown_value(change.field, change.old, services, t),
                    new=shown_value(change.field, change.new, services, t),
                )
                for change in entry.changes
            ],
            reason=entry.reason,
        )
        for entry in reversed(history)
    ]


def _trials(services: Services) -> Trials:
    if services.trials is None:
        raise ManagedRemotely("promotions are managed in the remote core engine (KARTKA_ENGINE=http); try them there")
    return services.trials


def _actor(request: Request[Any, Any, Any]) -> str:
    return f"staff:{current_staff(request).staff}"


def _cart_rows(form: Any) -> list[dict[str, str]]:
    rows = []
    for n in range(CART_ROWS):
        rows.append(
            {
                part: str(form.get(f"cart.{n}.{part}") or "").strip()
                for part in ("sku", "category", "brand", "qty", "price")
            }
            | {"on_sale": "yes" if form.get(f"cart.{n}.on_sale") == "yes" else ""}
        )
    return rows


def preview_input(form: Any, services: Services, t: Callable[[str], str]) -> PromotionPreviewInput:
    """The sample cart a person typed, as the preview takes it; :class:`pf.FormErrors` when a row's
    numbers cannot be read or the preview's own checks refuse it."""
    lines: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for n, row in enumerate(_cart_rows(form)):
        if not row["sku"]:
            continue
        line: dict[str, Any] = {"sku": row["sku"], "on_sale": row["on_sale"] == "yes"}
        try:
            line["qty"] = pf.typed(row["qty"] or "1", "int", services.program.zone)
        except ValueError:
            errors[f"cart.{n}.qty"] = t("pf.bad.int")
        try:
            line["unit_price"] = pf.scaled(row["price"], 2)
        except ValueError:
            errors[f"cart.{n}.price"] = t("pf.bad.money")
        line |= {part: row[part] for part in ("category", "brand") if row[part]}
        lines.append(line)
    body: dict[str, Any] = {"lines": lines, "channel": str(form.get("channel") or "pos")}
    for part in ("card", "store"):
        if value := str(form.get(part) or "").strip():
            body[part] = value
    if at := str(form.get("at") or "").strip():
        try:
            body["at"] = pf.typed(at, "datetime", services.program.zone)
        except ValueError:
            errors["at"] = t("pf.bad.datetime")
    if not lines:
        errors["cart"] = t("pp.no_lines")
    if errors:
        raise pf.FormErrors(errors)
    try:
        return msgspec.convert(body, PromotionPreviewInput)
    except msgspec.ValidationError as exc:
        raise pf.FormErrors({"cart": str(exc)}) from None


def backtest_input(form: Any, services: Services, t: Callable[[str], str]) -> BacktestInput:
    """A period of whole local days, ``from`` to ``to`` inclusive."""
    zone = services.program.zone
    errors: dict[str, str] = {}
    days: dict[str, date] = {}
    for part in ("from", "to"):
        day = parse_day(str(form.get(part) or ""))
        if day is None:
            errors[part] = t("pf.bad.date")
        else:
            days[part] = day
    if errors:
        raise pf.FormErrors(errors)
    start = datetime.combine(days["from"], time(), zone)
    end = datetime.combine(days["to"] + timedelta(days=1), time(), zone)
    return msgspec.convert({"from": start.isoformat(), "to": end.isoformat()}, BacktestInput)


class ConsolePromotionController(Controller):
    path = HERE
    include_in_schema = False
    before_request = signed_in(Permission.PROMOTIONS_READ)

    # -- the list -----------------------------------------------------------------------------------

    async def _list(
        self,
        request: Request[Any, Any, State],
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: Any = None,
    ) -> Response[Any]:
        services = app_services(request)
        q = (request.query_params.get("q") or "").strip()[:100] or None
        try:
            async with services.pool.acquire() as conn:
                found = await services.promotions.find(
                    conn, status=None, q=q, limit=_LISTED + 1, now=services.clock.now()
                )
                groups = await services.promotions.groups(conn)
        except DomainError as exc:
            return _failed(request, exc)
        sections = [(key, [p for p in found[:_LISTED] if p.status in states]) for key, states in SECTIONS]
        return render(
            request,
            "console/promotions/list.html",
            status=status,
            q=q or "",
            more=len(found) > _LISTED,
            listed=_LISTED,
            sections=sections,
            groups=groups,
            modes=MODES,
            may_manage=current_staff(request).may(Permission.PROMOTIONS),
            errors=errors or {},
            form=form or {},
        )

    @get("/", media_type="text/html")
    async def index(self, request: Request[Any, Any, State]) -> Response[Any]:
        return await self._list(request)

    @post("/groups", media_type="text/html", status_code=200, before_request=signed_in(Permission.PROMOTIONS))
    async def put_group(self, request: Request[Any, Any, State]) -> Response[Any]:
        data = await request.form()
        if not sessions_of(request).accepts(request, str(data.get("csrf_token") or ""), current_staff(request)):
            return stale_form(request)
        services = app_services(request)
        lang = language(request)
        form = {k: str(data.get(k) or "").strip() for k in ("id", "mode", "priority", "max_discount_bp")}
        body: dict[str, Any] = {"mode": form["mode"] or "exclusive"}
        problem = None
        if not re.fullmatch(ID_PATTERN, form["id"]):  # what the admin API's path allows
            problem = text(lang, "pg.bad_id")
        for name, kind in (("priority", "int"), ("max_discount_bp", "percent")):
            try:
                if form[name]:
                    body[name] = pf.typed(form[name], kind, services.program.zone)  # type: ignore[arg-type]
            except ValueError:
                problem = problem or text(lang, f"pf.bad.{kind}")
        if problem:
            return await self._list(request, status=422, errors={"group": problem}, form=form)
        try:
            rules: Group = parse_group(body)
            async with transaction(request) as tx:
                saved = await services.promotions.put_group(
                    tx, form["id"], rules, actor=_actor(request), now=services.clock.now()
                )
        except DomainError as exc:
            message = text(lang, "error", message=exc.message)
            return await self._list(request, status=status_of(exc), errors={"group": message}, form=form)
        return back_with_notice(request, HERE, text(lang, "pg.done", id=saved.id))

    # -- the editor -----------------------------------------------------------------------------------

    async def _editor(
        self,
        request: Request[Any, Any, State],
        form: pf.Form,
        *,
        promotion_id: str | None,
        status: int = 200,
        errors: dict[str, str] | None = None,
    ) -> Response[Any]:
        services = app_services(request)
        try:
            async with services.pool.acquire() as conn:
                groups = await services.promotions.groups(conn)
        except DomainError as exc:
            return _failed(request, exc)
        lang = language(request)

        def t(key: str) -> str:
            return text(lang, key)

        fields = {field for wanted in pf.BENEFIT_FIELDS.values() for field in wanted}
        return render(
            request,
            "console/promotions/edit.html",
            status=status,
            form=form,
            errors=errors or {},
            promotion_id=promotion_id,
            groups=groups,
            tiers=[(tier.code, tier.name) for tier in services.program.tiers],
            types=pf.BENEFIT_TYPES,
            benefit_users={f: [k for k, wanted in pf.BENEFIT_FIELDS.items() if f in wanted] for f in fields},
            channels=[(c, t(f"pf.channel.{c}")) for c in pf.CHANNELS],
            weekdays=[(d, t(f"pf.day.{d}")) for d in pf.WEEKDAYS],
            label=lambda name: label(name, t),
        )

    @get("/new", media_type="text/html", before_request=signed_in(Permission.PROMOTIONS))
    async def new(self, request: Request[Any, Any, State]) -> Response[Any]:
        form = pf.read({}) | {"benefit.type": "percent_off", "group": "default", "priority": "100"}
        return await self._editor(request, form, promotion_id=None)

    async def _save(
        self,
        request: Request[Any, Any, State],
        promotion_id: str | None,
        save: Callable[[Connection, Promotion], Awaitable[PromotionView]],
        done: str,
    ) -> Response[Any]:
        data = await request.form()
        if not sessions_of(request).accepts(request, str(data.get("csrf_token") or ""), current_staff(request)):
            return stale_form(request)
        lang = language(request)
        form = pf.read(data)
        if promotion_id is not None:
            form["id"] = promotion_id
        try:
            promotion = pf.promotion_of(form, app_services(request).program.zone, lambda key: text(lang, key))
            async with transaction(request) as tx:
                view = await save(tx, promotion)
        except pf.FormErrors as exc:
            return await self._editor(request, form, promotion_id=promotion_id, status=422, errors=exc.errors)
        except DomainError as exc:
            errors = {pf.input_of(exc.field): pf.said(exc)}
            return await self._editor(request, form, promotion_id=promotion_id, status=status_of(exc), errors=errors)
        return back_with_notice(request, f"{HERE}/{view.id}", text(lang, done, id=view.id))

    @post("/new", media_type="text/html", status_code=200, before_request=signed_in(Permission.PROMOTIONS))
    async def create(self, request: Request[Any, Any, State]) -> Response[Any]:
        services = app_services(request)

        async def save(tx: Connection, promotion: Promotion) -> PromotionView:
            return await services.promotions.create(tx, promotion, actor=_actor(request), now=services.clock.now())

        return await self._save(request, None, save, "pf.created")

    @get("/{promotion_id:str}/edit", media_type="text/html", before_request=signed_in(Permission.PROMOTIONS))
    async def edit(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        services = app_services(request)
        try:
            async with services.pool.acquire() as conn:
                view = await services.promotions.get(conn, promotion_id, services.clock.now())
        except DomainError as exc:
            return _failed(request, exc)
        newest = view.draft or view.live
        assert newest is not None
        return await self._editor(request, pf.form_of(newest.promotion, services.program.zone), promotion_id=view.id)

    @post(
        "/{promotion_id:str}/edit",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS),
    )
    async def update(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        services = app_services(request)

        async def save(tx: Connection, promotion: Promotion) -> PromotionView:
            return await services.promotions.update(
                tx, promotion_id, promotion, actor=_actor(request), now=services.clock.now()
            )

        return await self._save(request, promotion_id, save, "pf.saved")

    # -- one promotion ----------------------------------------------------------------------------------

    async def _page(
        self,
        request: Request[Any, Any, State],
        promotion_id: str,
        *,
        status: int = 200,
        error: str | None = None,
        **extra: Any,
    ) -> Response[Any]:
        services = app_services(request)
        lang = language(request)

        def t(key: str) -> str:
            return text(lang, key)

        try:
            async with services.pool.acquire() as conn:
                view = await services.promotions.get(conn, promotion_id, services.clock.now())
                history = await services.promotions.history(conn, promotion_id)
        except DomainError as exc:
            return _failed(request, exc)
        session = current_staff(request)
        names = {entry.by: entry.by_name or entry.by for entry in history}
        today = services.clock.now().astimezone(services.program.zone).date()
        context: dict[str, Any] = {
            "cart": [{"sku": "", "category": "", "brand": "", "qty": "", "price": "", "on_sale": ""}] * CART_ROWS,
            "cart_form": {"channel": "pos"},
            "period": {"from": (today - timedelta(days=BACKTEST_DAYS)).isoformat(), "to": today.isoformat()},
            "preview": None,
            "backtest": None,
            "form_errors": {},
        } | extra
        return render(
            request,
            "console/promotions/show.html",
            status=status,
            view=view,
            live=summary(view.live.promotion, services, t) if view.live else None,
            draft=summary(view.draft.promotion, services, t) if view.draft else None,
            history=readable(history, services, t),
            names=names,
            error=error,
            may_manage=session.may(Permission.PROMOTIONS),
            may_approve=session.may(Permission.PROMOTIONS_APPROVE),
            is_author=view.draft is not None and view.draft.author == f"staff:{session.staff}",
            label=lambda name: label(name, t),
            **context,
        )

    @get("/{promotion_id:str}", media_type="text/html")
    async def show(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        return await self._page(request, promotion_id)

    @post("/{promotion_id:str}/preview", media_type="text/html", status_code=200)
    async def preview(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        data = await request.form()
        if not sessions_of(request).accepts(request, str(data.get("csrf_token") or ""), current_staff(request)):
            return stale_form(request)
        services = app_services(request)
        lang = language(request)
        found: Any = None
        errors: dict[str, str] = {}
        status = 200
        try:
            wanted = preview_input(data, services, lambda key: text(lang, key))
            async with services.pool.acquire() as conn:
                view = await services.promotions.get(conn, promotion_id, services.clock.now())
                if view.draft is not None:  # the edit waiting for approval, priced as if it ran
                    wanted = msgspec.structs.replace(wanted, drafts=(view.draft.promotion,))
                found = await _trials(services).preview(conn, wanted, services.clock.now())
        except pf.FormErrors as exc:
            errors, status = exc.errors, 422
        except DomainError as exc:
            errors, status = {"cart": text(lang, "error", message=exc.message)}, status_of(exc)
        context = {
            "cart": _cart_rows(data),
            "cart_form": {k: str(data.get(k) or "") for k in ("card", "store", "channel", "at")},
            "preview": found,
            "form_errors": errors,
            "promotion_id": promotion_id,
        }
        if wants_partial(request, "preview-result"):
            return render(request, "console/promotions/preview.html", status=status, **context)
        return await self._page(request, promotion_id, status=status, **context)

    @post("/{promotion_id:str}/backtest", media_type="text/html", status_code=200)
    async def backtest(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        data = await request.form()
        if not sessions_of(request).accepts(request, str(data.get("csrf_token") or ""), current_staff(request)):
            return stale_form(request)
        services = app_services(request)
        lang = language(request)
        found: Any = None
        errors: dict[str, str] = {}
        status = 200
        try:
            period = backtest_input(data, services, lambda key: text(lang, key))
            async with services.pool.acquire() as conn:
                found = await _trials(services).backtest(conn, promotion_id, period)
        except pf.FormErrors as exc:
            errors, status = exc.errors, 422
        except DomainError as exc:
            errors, status = {"period": text(lang, "error", message=exc.message)}, status_of(exc)
        context = {
            "period": {k: str(data.get(k) or "") for k in ("from", "to")},
            "backtest": found,
            "form_errors": errors,
        }
        if wants_partial(request, "backtest-result"):
            return render(request, "console/promotions/backtest.html", status=status, **context)
        return await self._page(request, promotion_id, status=status, **context)

    # -- the life cycle ---------------------------------------------------------------------------------

    async def _act(
        self,
        request: Request[Any, Any, State],
        promotion_id: str,
        action: str,
        call: Callable[[Connection, str, datetime], Awaitable[PromotionView]],
    ) -> Response[Any]:
        data = await request.form()
        if not sessions_of(request).accepts(request, str(data.get("csrf_token") or ""), current_staff(request)):
            return stale_form(request)
        services = app_services(request)
        lang = language(request)
        try:
            async with transaction(request) as tx:
                view = await call(tx, str(data.get("reason") or "").strip(), services.clock.now())
        except DomainError as exc:
            message = text(lang, "error", message=exc.message)
            return await self._page(request, promotion_id, status=status_of(exc), error=message)
        status = text(lang, f"pst.{view.status.value}")
        return back_with_notice(request, f"{HERE}/{promotion_id}", text(lang, f"pa.{action}.done", status=status))

    @post(
        "/{promotion_id:str}/submit",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS),
    )
    async def submit(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions
        return await self._act(
            request,
            promotion_id,
            "submit",
            lambda tx, _, now: admin.submit(tx, promotion_id, actor=_actor(request), now=now),
        )

    @post(
        "/{promotion_id:str}/approve",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS_APPROVE),
    )
    async def approve(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions
        return await self._act(
            request,
            promotion_id,
            "approve",
            lambda tx, _, now: admin.approve(tx, promotion_id, actor=_actor(request), now=now),
        )

    @post(
        "/{promotion_id:str}/reject",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS_APPROVE),
    )
    async def reject(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions

        async def call(tx: Connection, reason: str, now: datetime) -> PromotionView:
            try:
                rejection = msgspec.convert({"reason": reason}, Rejection)
            except msgspec.ValidationError:
                raise _NoReason(text(language(request), "pa.reject.reason_needed"), field="reason") from None
            return await admin.reject(tx, promotion_id, rejection.reason, actor=_actor(request), now=now)

        return await self._act(request, promotion_id, "reject", call)

    @post(
        "/{promotion_id:str}/pause",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS),
    )
    async def pause(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions
        return await self._act(
            request,
            promotion_id,
            "pause",
            lambda tx, _, now: admin.pause(tx, promotion_id, actor=_actor(request), now=now),
        )

    @post(
        "/{promotion_id:str}/resume",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS),
    )
    async def resume(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions
        return await self._act(
            request,
            promotion_id,
            "resume",
            lambda tx, _, now: admin.resume(tx, promotion_id, actor=_actor(request), now=now),
        )

    @post(
        "/{promotion_id:str}/end",
        media_type="text/html",
        status_code=200,
        before_request=signed_in(Permission.PROMOTIONS),
    )
    async def end(self, promotion_id: PromotionId, request: Request[Any, Any, State]) -> Response[Any]:
        admin = app_services(request).promotions
        return await self._act(
            request, promotion_id, "end", lambda tx, _, now: admin.end(tx, promotion_id, actor=_actor(request), now=now)
        )


class _NoReason(DomainError):
    kind = "invalid"


def _failed(request: Request[Any, Any, Any], exc: DomainError) -> Template:
    """A page that could not be shown at all (no such promotion; a remote engine owns promotions)."""
    return render(
        request,
        "console/promotions/failed.html",
        status=status_of(exc),
        message=text(language(request), "error", message=exc.message),
    )
