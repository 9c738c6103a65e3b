"""Fixtures for scheduler tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.webhook_server import FakeWebhookServer


@pytest.fixture
def webhook() -> Iterator[FakeWebhookServer]:
    """The fake receiving system for the webhook channel, a real HTTP server on 127.0.0.1."""
    fake = FakeWebhookServer()
    with fake.running():
        yield fake
