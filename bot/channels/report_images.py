"""The chart images a secretary's report carries, for every chat channel.

A /report reply and the weekly digest are the same `BranchSummary` / `FullReport`; each channel
sends its text and then these images (Telegram as photos, 公众号 and WeCom as uploaded image
messages). Drawing is matplotlib work, so it runs in a worker thread (one, of its own) and
never on the event loop; a chart that fails is logged (its caption, never report data) and
left out — the text is never held back by a chart.

Rendering is remembered per report object for a few minutes, so a secretary bound on two
channels gets both copies from one drawing. `ChartJobs` serves the WeChat/WeCom callbacks,
whose text must answer within seconds: drawing starts at once, and the images follow the
reply. `count_images` records what became of images per platform (a 公众号 digest outside
the 48-hour window, sent as a template message, cannot carry any).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import traceback
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from bot.core.results import BranchSummary, Result
from bot.metrics import REGISTRY

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0  # a push sends one row to all its channels well within this
JOB_SECONDS = 600.0  # a drawing nobody picked up by then is dropped
MAX_JOBS = 64

IMAGES = Counter("qingfeng_report_images", "Report chart images by platform and outcome: sent, failed, "
                 "not_allowed (no channel for images, e.g. a 公众号 template message)",
                 ["platform", "outcome"], registry=REGISTRY)


def count_images(platform: str, outcome: str, n: int = 1) -> None:
    if n:
        IMAGES.labels(platform, outcome).inc(n)


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


# One drawing thread of its own: charts are drawn one at a time anyway (matplotlib settings are
# process-global, see charts._render_lock), and a digest to many secretaries must not fill the
# default executor, which asyncio also uses for DNS look-ups, with threads waiting on that lock.
_drawer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="charts")

_cache: dict[int, tuple[weakref.ref[BranchSummary], float, list[tuple[str, bytes]]]] = {}


async def _charts_of(summary: BranchSummary) -> list[tuple[str, bytes]]:
    now = time.monotonic()
    for key, (ref, at, _) in list(_cache.items()):
        if ref() is None or now - at > CACHE_SECONDS:
            del _cache[key]
    hit = _cache.get(id(summary))
    if hit is not None and hit[0]() is summary:
        return hit[2]
    drawn = await asyncio.get_running_loop().run_in_executor(_drawer, _draw, summary)
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


class ChartJobs:
    """Charts drawn while a callback's text reply goes out, sent after it.

    `start(results)` begins drawing in a worker thread and returns a small follow-up message,
    `{"type": "charts", "ref": …}` (JSON, stored with the reply like any follow-up); `take`
    hands over the images for it once drawn. Only the process that drew them can take them:
    a retried callback gets the passive reply alone, as it already does.
    """

    KIND = "charts"

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, tuple[float, asyncio.Task[list[ReportImage]]]] = OrderedDict()

    def start(self, results: Sequence[Result]) -> dict[str, Any] | None:
        if not reports_in(results):
            return None
        now = time.monotonic()
        while self._jobs and (len(self._jobs) >= MAX_JOBS or now - next(iter(self._jobs.values()))[0] > JOB_SECONDS):
            self._jobs.popitem(last=False)  # never picked up (the reply was lost): let it go
        ref = uuid.uuid4().hex
        self._jobs[ref] = (now, asyncio.create_task(report_images(list(results))))
        return {"type": self.KIND, "ref": ref}

    async def take(self, message: dict[str, Any]) -> list[ReportImage]:
        job = self._jobs.pop(str(message.get("ref")), None)
        return await job[1] if job else []
