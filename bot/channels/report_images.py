"""The chart images a secretary's report carries, for every chat channel.

A /report reply and the weekly digest are the same `BranchSummary` / `FullReport`; each channel
sends its text and then these images (Telegram as photos, 公众号 and WeCom as uploaded image
messages). Drawing is matplotlib work, so it runs in a worker thread and never on the event
loop; a chart that fails is logged (its caption, never report data) and left out — the text is
never held back by a chart.

Rendering is remembered per report object for a few minutes, so a secretary bound on two
channels gets both copies from one drawing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.results import BranchSummary, Result

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0  # a push sends one row to all its channels well within this


@dataclass(frozen=True)
class ReportImage:
    caption: str  # 各题选项分布 …
    png: bytes
    filename: str  # chart1.png: platforms want a name with an image extension on upload


def reports_in(results: Sequence[Result]) -> list[BranchSummary]:
    """The reports among `results` that have charts to draw (not withheld)."""
    return [r for r in results if isinstance(r, BranchSummary) and not r.withheld]


def _log_failure(what: str, exc: BaseException) -> None:
    # The stack but not the message: a chart error can quote labels (organisation names, stems).
    log.error("%s: %s\n%s", what, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))


def _draw(summary: BranchSummary) -> list[tuple[str, bytes]]:
    """In a worker thread: every chart of one report, skipping those that fail."""
    from bot.reports.charts import chat_chart_plan  # matplotlib loads on first use, not at import

    drawn = []
    for caption, draw in chat_chart_plan(summary):
        try:
            drawn.append((caption, draw()))
        except Exception as exc:  # one broken chart must not cost the others (or the text)
            _log_failure(f"report chart {caption} failed", exc)
    return drawn


_cache: dict[int, tuple[weakref.ref[BranchSummary], float, list[tuple[str, bytes]]]] = {}


async def _charts_of(summary: BranchSummary) -> list[tuple[str, bytes]]:
    now = time.monotonic()
    for key, (ref, at, _) in list(_cache.items()):
        if ref() is None or now - at > CACHE_SECONDS:
            del _cache[key]
    hit = _cache.get(id(summary))
    if hit is not None and hit[0]() is summary:
        return hit[2]
    drawn = await asyncio.to_thread(_draw, summary)
    _cache[id(summary)] = (weakref.ref(summary), now, drawn)
    return drawn


async def report_images(results: Sequence[Result]) -> list[ReportImage]:
    """The chart images for the reports among `results`, in order; [] when there are none.
    Never raises: a failure is logged and the images concerned are skipped."""
    images: list[ReportImage] = []
    for summary in reports_in(results):
        try:
            drawn = await _charts_of(summary)
        except Exception as exc:  # e.g. no CJK font: the text report still goes out
            _log_failure("report charts failed", exc)
            continue
        images += [ReportImage(caption, png, f"chart{len(images) + k}.png")
                   for k, (caption, png) in enumerate(drawn, start=1)]
    return images
