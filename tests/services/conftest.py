"""The stack the suites in tests/services share (see bots_stack)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.bots_stack import BotsStack, bots_stack


@pytest.fixture(scope="package")
def shared_bots_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotsStack]:
    """Started by the first suite that asks; stopped after the last test of tests/services."""
    with bots_stack(tmp_path_factory.mktemp("bots-stack")) as running:
        yield running
