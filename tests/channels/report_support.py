"""Shared set-up for the report-chart tests of every channel: answered rounds, a queued weekly
digest, and checks that what a platform received is a usable PNG."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from bot.app import App
from bot.channels.base import Messenger
from bot.core.orgs import subtree_members
from bot.core.push import PushStats, send_notifications
from bot.core.results import Result
from bot.storage.bulk import insert_ignore
from bot.storage.models import DeliveryStatus, Member, Notification, Role, Round
from scheduler.jobs import builder
from tests.factories import OrgTree
from tests.reports import builders as b

ITEMS = ["t-single-001", "t-single-002", "t-multiple-001", "t-judge-001", "t-judge-002"]  # five topics
PNG = b"\x89PNG\r\n\x1a\n"


async def answered_rounds(app: App, tree: OrgTree, *, weeks: int = 2) -> list[Round]:
    """`weeks` rounds on the tree's root a week apart (the last opening now), every member of
    every branch answering every item, about one answer in four wrong."""
    now = app.service.clock()
    rounds = []
    for week in range(weeks - 1, -1, -1):
        rnd = await b.open_round(app, tree.root, ITEMS, at=now - timedelta(days=7 * week) - timedelta(hours=2),
                                 title=f"第{weeks - week}周学习")
        async with app.db.session() as s:
            people = [m for m in await subtree_members(s, tree.root) if m.role != Role.admin]
        await b.answers(app, rnd, [(m.id, item, (m.id + j + week) % 4 != 0)  # type: ignore[misc]
                                   for m in people for j, item in enumerate(ITEMS)])
        rounds.append(rnd)
    return rounds


async def queue_digest(app: App, rnd: Round, secretary: Member) -> str:
    """The weekly digest row for one secretary, as the scheduler's digest job writes it."""
    key = f"digest:test:{rnd.id}"
    async with app.db.session() as s:
        await insert_ignore(s, Notification, [{
            "key": key, "kind": "digest", "member_id": secretary.id, "org_id": secretary.org_id,
            "round_id": rnd.id, "payload": {"org_id": secretary.org_id}, "status": DeliveryStatus.pending,
            "attempts": 0, "created_at": app.service.clock()}])
        await s.commit()
    return key


async def push_digest(app: App, key: str, messengers: Mapping[str, Messenger]) -> PushStats:
    """Send queued digest rows the way the scheduler's sweep does (the real builder)."""
    return await send_notifications(app.db, key, messengers, build=builder(app, "digest"))


async def digest_report(app: App, rnd: Round, secretary: Member) -> list[Result]:
    """What the digest builder says for this secretary, built again for the expectations."""
    note = Notification(key="x", kind="digest", member_id=secretary.id, org_id=secretary.org_id,  # type: ignore[arg-type]
                        round_id=rnd.id, payload={"org_id": secretary.org_id})
    return await builder(app, "digest")(note)


def png_size(data: bytes) -> tuple[int, int]:
    """Check `data` is a complete PNG and return its size (what a platform would display)."""
    assert data.startswith(PNG), "not a PNG"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        img.verify()  # truncated or corrupt data fails here
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def check_chart(data: bytes) -> None:
    width, height = png_size(data)
    # A readable chart, and within what the platforms take (Telegram: w + h <= 10000, ratio <= 20).
    assert 600 <= width <= 4000 and 200 <= height <= 4000 and max(width, height) / min(width, height) <= 20


@contextmanager
def failing_charts(monkeypatch: pytest.MonkeyPatch, *, titled: str = "") -> Iterator[list[str]]:
    """Make matplotlib's PNG writer fail (for charts whose title contains `titled`; all when
    empty), as a broken font or a full disk would. Yields the titles that failed."""
    failed: list[str] = []
    original = FigureCanvasAgg.print_png  # restored when the block ends

    # Takes what print_figure passes on; hands matplotlib's writer only the keywords it declares.
    def print_png(canvas: FigureCanvasAgg, filename_or_obj: Any, *, metadata: Any = None,
                  pil_kwargs: Any = None, **_print_figure_kwargs: Any) -> Any:
        title = canvas.figure._suptitle.get_text() if canvas.figure._suptitle else ""  # type: ignore[attr-defined]
        if titled in title:
            failed.append(title)
            raise RuntimeError("simulated rendering failure")
        return original(canvas, filename_or_obj, metadata=metadata, pil_kwargs=pil_kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(FigureCanvasAgg, "print_png", print_png)
        yield failed
