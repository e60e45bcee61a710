"""The suite's own machinery: tests that share a server, a browser or a throwaway cluster rely on
pytest-xdist's ``xdist_group`` keeping them on one worker. A pytest release that silently broke it
(pytest-dev/pytest-xdist#1386) made every such module set its fixtures up again on each worker."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("suite-setup")
def test_xdist_groups_keep_their_tests_together(request: pytest.FixtureRequest) -> None:
    if getattr(request.config.option, "loadgroup", False):  # set on a worker of `-n N --dist loadgroup`
        assert request.node.nodeid.endswith("@suite-setup"), request.node.nodeid
