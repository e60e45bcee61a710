"""Errors the wallet domain raises; ``api.errors`` maps their kinds to HTTP statuses."""

from __future__ import annotations

from kartka.errors import Conflict, InvalidInput, NotFound


class InvalidPhone(InvalidInput):
    code = "invalid-phone"


class CardNotFound(NotFound):
    code = "card-not-found"


class CustomerNotFound(NotFound):
    code = "customer-not-found"


class CardBlocked(Conflict):
    code = "card-blocked"


class CardOwnedElsewhere(Conflict):
    code = "card-owned-by-another-customer"


class CardClosed(Conflict):
    """The shopper closed their account; the card's number is never reused."""

    code = "card-closed"
