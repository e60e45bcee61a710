"""Signing in: shoppers by phone (a code, then tokens), staff by password; refreshing and signing out."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.controllers.pos import Phone
from api.errors import problems
from api.request import client_address, preferred_language
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.staff import StaffSession
from kartka.tokens import TokenPair
from wallet.signin import CodeSent, SignedIn

RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class CodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone


class CodeSignIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    code: Annotated[
        str, msgspec.Meta(pattern=r"^[0-9]{4,10}$", description="The digits from the SMS", examples=["482913"])
    ]


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: RefreshToken


class StaffCredentials(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class SignInController(Controller):
    path = "/v1/auth"
    tags = ["app"]  # noqa: RUF012

    @post(
        "/otp",
        operation_id="authSendCode",
        summary="Send a sign-in code to a phone (SMS, or Viber where configured)",
        description="The answer is the same whether or not the phone belongs to a customer. 429 with Retry-After "
        "within the resend cooldown, after too many codes to one phone in an hour, or from one address.",
        status_code=202,
        responses=problems(429),
    )
    async def send_code(self, data: JSONBody[CodeRequest], request: Request[Any, Any, State]) -> CodeSent:
        signin = services_of(request.app.state).signin
        return await signin.send_code(data.phone, client=client_address(request), locale=preferred_language(request))

    @post(
        "/token",
        operation_id="authSignIn",
        summary="Sign in with the code: an access and a refresh token; the first sign-in issues the card",
        description="401 for a wrong or expired code (`tries_left` says how many tries this address has "
        "left at this code, or the code in all if fewer: at 0 this address must ask for a new code, while the "
        "code may still work for its owner elsewhere) and 429 after too many attempts from one address.",
        status_code=200,
        responses=problems(401, 429),
    )
    async def sign_in(self, data: JSONBody[CodeSignIn], request: Request[Any, Any, State]) -> SignedIn:
        signin = services_of(request.app.state).signin
        return await signin.sign_in(
            data.phone, data.code, client=client_address(request), locale=preferred_language(request)
        )

    @post(
        "/refresh",
        operation_id="authRefresh",
        summary="Trade a refresh token for a new pair (the old one is spent; reusing it ends the session)",
        status_code=200,
        responses=problems(401),
    )
    async def refresh(self, data: JSONBody[Refresh], request: Request[Any, Any, State]) -> TokenPair:
        services = services_of(request.app.state)
        return await services.tokens.refresh(services.pool, data.refresh_token)

    @post(
        "/logout",
        operation_id="authLogout",
        summary="Sign out: end the session of this refresh token (its access tokens stop working too)",
        status_code=204,
        dependencies={"tx": Provide(provide_tx)},
    )
    async def logout(
        self, data: JSONBody[Refresh], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> None:
        await services_of(request.app.state).tokens.revoke(tx, data.refresh_token)


class StaffLoginController(Controller):
    path = "/v1/admin/login"
    tags = ["admin"]  # noqa: RUF012

    @post(
        "/",
        operation_id="adminLogin",
        summary="Staff sign-in with a password (accounts come from `kartka staff create`)",
        description="401 says only that the username or password is wrong. 429 after too many failures for one "
        "username in 15 minutes, or too many attempts from one address.",
        status_code=200,
        responses=problems(401, 429),
    )
    async def login(self, data: JSONBody[StaffCredentials], request: Request[Any, Any, State]) -> StaffSession:
        staff = services_of(request.app.state).staff_signin
        return await staff.login(data.username, data.password, client=client_address(request))
