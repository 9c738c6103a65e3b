"""The scheduler in `qingfeng run`: APScheduler (AsyncIOScheduler, same event loop as the bot)
wakes us up; the database decides what runs and who sends.

- `Runner` is the logic, driven by any clock: `run_due(now)` claims and runs every occurrence
  that is due (claims make repeats and replicas harmless; an occurrence missed while down runs
  once if it is at most QINGFENG_PUSH_GRACE_HOURS late, else it is skipped with a log line), and
  `sweep(now)` sends whatever rows are pending (new rounds, work a crashed process left behind);
  `tick(now)` does both and then folds finished rounds for reports (bot/reports/fold.py).
- `SchedulerComponent` wires it to APScheduler: a tick every QINGFENG_SCHEDULER_TICK_SECONDS
  re-reads the schedules (so a change takes effect without restart), resumes sends and folds
  finished rounds for reports; a DateTrigger job per upcoming due time fires it on the minute; a
  heartbeat renews our lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, update
from sqlmodel import col, select
from starlette.routing import BaseRoute

from bot.app import App
from bot.channels.base import Messenger
from bot.core.push import MAX_ATTEMPTS, PushStats, new_owner_id, send_notifications, send_round
from bot.reports.fold import fold_finished_rounds
from bot.storage.models import Delivery, DeliveryStatus, JobClaim, Notification, Round
from scheduler import instances
from scheduler.jobs import JobContext, builder, claim_and_run
from scheduler.occurrences import Occurrence, occurrences
from scheduler.schedules import ScheduleBook

log = logging.getLogger(__name__)
LOOKBACK = timedelta(days=35)  # how far back missed occurrences are looked for (and logged as stale)
NOTIFICATION_TTL = timedelta(days=7)  # a digest or case push not sent within a week is dropped


def _open(model: Any) -> Any:
    """Rows that may still be sent: pending, being sent, or failed with attempts left."""
    return or_(col(model.status).in_([DeliveryStatus.pending, DeliveryStatus.sending]),
               (col(model.status) == DeliveryStatus.failed) & (col(model.attempts) < MAX_ATTEMPTS))


@dataclass
class DueReport:
    ran: list[Occurrence] = field(default_factory=list)
    stale: list[Occurrence] = field(default_factory=list)
    upcoming: list[Occurrence] = field(default_factory=list)


# Finished rounds folded per tick: a backlog (an upgrade, a long stop) is worked off over several
# ticks, so that no tick holds the database or delays a shutdown for long.
FOLDS_PER_TICK = 5


class Runner:
    def __init__(self, app: App, messengers: Mapping[str, Messenger], *, owner: str | None = None) -> None:
        self.app = app
        self.db = app.db
        self.messengers = dict(messengers)
        self.clock = app.service.clock
        self.owner = owner or new_owner_id()
        s = app.settings
        self.grace = timedelta(hours=s.push_grace_hours)
        self.horizon = max(timedelta(seconds=2 * s.scheduler_tick_seconds), timedelta(minutes=10))
        self.lease = timedelta(seconds=s.scheduler_lease_seconds)
        self.stopping = False
        self._due_lock = asyncio.Lock()
        self._sweep_lock = asyncio.Lock()

    async def book(self) -> ScheduleBook:
        async with self.db.session() as session:
            return await ScheduleBook.load(session, self.app.settings.timezone)

    async def plan(self, book: ScheduleBook, now: datetime) -> list[Occurrence]:
        after = now - LOOKBACK
        async with self.db.session() as session:
            rounds = (await session.exec(select(Round).where(
                col(Round.deadline) > after - timedelta(days=8), col(Round.deadline) < now + timedelta(days=61))
            )).all()
        return occurrences(book, rounds, after=after, until=now + self.horizon)

    async def _claimed(self, occs: list[Occurrence]) -> set[tuple[str, datetime]]:
        keys = sorted({o.job_key for o in occs})
        if not keys:
            return set()
        async with self.db.session() as session:
            rows = (await session.exec(select(JobClaim.job_key, JobClaim.occurrence).where(
                col(JobClaim.job_key).in_(keys)))).all()
        return {(k, t) for k, t in rows}

    async def run_due(self, now: datetime | None = None) -> DueReport:
        """Claim and run every occurrence due by `now` (at most `grace` late); skip older ones."""
        async with self._due_lock:
            now = now or self.clock()
            book = await self.book()
            planned = await self.plan(book, now)
            claimed = await self._claimed([o for o in planned if o.due <= now])
            report = DueReport()
            ctx = JobContext(self.app, book, now, self.owner)
            for occ in planned:
                if occ.due > now:
                    report.upcoming.append(occ)
                elif (occ.job_key, occ.nominal) in claimed or self.stopping:
                    continue
                else:
                    try:
                        await self._run_one(ctx, occ, now, report)
                    except Exception:  # one broken job must not stop the others; it is retried next tick
                        log.exception("job %s failed", occ.key)
            if report.ran:  # new rounds bring their own reminders and digests
                report.upcoming = [o for o in await self.plan(await self.book(), now) if o.due > now]
            return report

    async def _run_one(self, ctx: JobContext, occ: Occurrence, now: datetime, report: DueReport) -> None:
        late = now - occ.due
        if late > self.grace:
            if await claim_and_run(ctx, occ, stale=True):
                report.stale.append(occ)
                log.warning("skipped stale %s: due %s UTC, %.1f h late (grace %.1f h)", occ.key,
                            f"{occ.due:%Y-%m-%d %H:%M}", late.total_seconds() / 3600,
                            self.grace.total_seconds() / 3600)
        elif await claim_and_run(ctx, occ):
            report.ran.append(occ)
            if late > timedelta(minutes=5):
                log.info("ran %s %.1f h late (missed while down)", occ.key, late.total_seconds() / 3600)

    async def expire(self, now: datetime, dead: set[str]) -> None:
        """Rows that can no longer be useful become failed, so they stop being retried."""
        gone = {"status": DeliveryStatus.failed, "last_error": "expired", "attempts": MAX_ATTEMPTS}

        def waiting(model: Any) -> Any:
            left = or_(col(model.status) == DeliveryStatus.pending,
                       (col(model.status) == DeliveryStatus.failed) & (col(model.attempts) < MAX_ATTEMPTS))
            if dead:  # claimed by a process that died: nobody is sending them
                left = or_(left, (col(model.status) == DeliveryStatus.sending) & col(model.claimed_by).in_(dead))
            return left

        async with self.db.session() as session:
            closed = select(Round.id).where(col(Round.deadline) <= now)
            d = await session.exec(update(Delivery).where(  # type: ignore[call-overload]
                col(Delivery.round_id).in_(closed), waiting(Delivery)).values(**gone))
            r = await session.exec(update(Notification).where(  # type: ignore[call-overload]
                waiting(Notification),
                or_((col(Notification.kind) == "reminder") & col(Notification.round_id).in_(closed),
                    col(Notification.created_at) < now - NOTIFICATION_TTL)).values(**gone))
            await session.commit()
        if d.rowcount or r.rowcount:
            log.warning("expired unsent rows: %d round invites, %d notifications", d.rowcount, r.rowcount)

    async def _dead_owners(self, now: datetime) -> set[str]:
        async with self.db.session() as session:
            owners = set((await session.exec(select(Delivery.claimed_by).where(
                Delivery.status == DeliveryStatus.sending).distinct())).all())
            owners |= set((await session.exec(select(Notification.claimed_by).where(
                Notification.status == DeliveryStatus.sending).distinct())).all())
        return await instances.dead_owners(self.db, {o for o in owners if o}, me=self.owner, now=now)

    async def sweep(self, now: datetime | None = None) -> PushStats:
        """Send every row that is ready: new rounds, retries, and rows a dead process left."""
        total = PushStats()
        async with self._sweep_lock:
            now = now or self.clock()
            dead = await self._dead_owners(now)
            await self.expire(now, dead)
            book = await self.book()
            concurrency = self.app.settings.push_concurrency
            async with self.db.session() as session:
                rounds = (await session.exec(
                    select(Round.id, Round.org_id).join(Delivery, col(Delivery.round_id) == col(Round.id))
                    .where(_open(Delivery), col(Round.deadline) > now).distinct()
                    .order_by(col(Round.id)))).all()
                keys = (await session.exec(
                    select(Notification.key, Notification.kind, Notification.org_id)
                    .where(_open(Notification)).distinct().order_by(col(Notification.key)))).all()
            for round_id, org_id in rounds:
                if self.stopping or book.quiet_end(org_id, now) is not None:
                    continue  # quiet hours: the round waits
                stats = await send_round(self.db, round_id, self.messengers, concurrency=concurrency,
                                         owner=self.owner, dead_owners=dead, clock=self.clock,
                                         should_stop=lambda: self.stopping)
                _add(total, stats)
            for key, kind, org_id in keys:
                if self.stopping or book.quiet_end(org_id, now) is not None:
                    continue
                stats = await send_notifications(self.db, key, self.messengers, build=builder(self.app, kind),
                                                 concurrency=concurrency, owner=self.owner, dead_owners=dead,
                                                 clock=self.clock, should_stop=lambda: self.stopping)
                _add(total, stats)
        return total

    async def heartbeat(self) -> None:
        await instances.renew(self.db, self.owner, now=self.clock(), lease=self.lease)

    async def tick(self, now: datetime | None = None) -> DueReport:
        report = await self.run_due(now)
        await self.sweep(now)
        await self.fold_reports(now)
        return report

    async def fold_reports(self, now: datetime | None = None) -> int:
        """Fold the rounds that finished for reports (bot/reports/fold.py).
        A failure only leaves reports reading the answers; it is retried next tick."""
        try:
            return await fold_finished_rounds(self.db, now or self.clock(), limit=FOLDS_PER_TICK)
        except Exception:
            log.exception("folding finished rounds for reports failed")
            return 0


def _add(total: PushStats, stats: PushStats) -> None:
    for name in ("sent", "failed", "blocked", "no_channel", "skipped"):
        setattr(total, name, getattr(total, name) + getattr(stats, name))


class SchedulerComponent:
    """The `Component` bot/runtime.py starts: APScheduler in the bot's event loop."""

    name = "scheduler"

    def __init__(self, app: App, messengers: Mapping[str, Messenger]) -> None:
        self.app = app
        self.runner = Runner(app, messengers)
        self.routes: list[BaseRoute] = []
        self.messenger: Messenger | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._sweeping: asyncio.Task[PushStats] | None = None
        self._sweep_again = False
        self._ticks: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        s = self.app.settings
        await self.runner.heartbeat()
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": int(s.push_grace_hours * 3600) or 1})
        now = datetime.now(UTC)
        # The first tick runs at once: it catches up on what fell due while we were down.
        self.scheduler.add_job(self.tick, IntervalTrigger(seconds=s.scheduler_tick_seconds), id="tick",
                               next_run_time=now)
        self.scheduler.add_job(self.runner.heartbeat, IntervalTrigger(seconds=s.scheduler_lease_seconds / 3),
                               id="heartbeat")
        self.scheduler.start()
        log.info("scheduler started (instance %s, grace %.1f h)", self.runner.owner, s.push_grace_hours)

    async def tick(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._ticks.add(task)  # `stop` lets a running tick finish instead of cancelling it
        try:
            try:
                report = await self.runner.run_due()
            except Exception:
                log.exception("scheduler tick failed")
                return
            if self.runner.stopping:  # finished during shutdown: no new sweep
                return
            self.kick_sweep()
            self._sync_wakeups(report.upcoming)
            await self.runner.fold_reports()  # the sends are under way; `stop` waits for this too
        finally:
            self._ticks.discard(task)  # type: ignore[arg-type]

    def kick_sweep(self) -> None:
        """Sweep in the background (a fan-out may take a while); one sweep at a time."""
        if self._sweeping is not None and not self._sweeping.done():
            self._sweep_again = True
            return
        self._sweeping = asyncio.create_task(self._sweep_loop())

    async def _sweep_loop(self) -> PushStats:
        stats = PushStats()
        while True:
            self._sweep_again = False
            try:
                _add(stats, await self.runner.sweep())
            except Exception:
                log.exception("sweep failed")
            if not self._sweep_again or self.runner.stopping:
                return stats

    def _sync_wakeups(self, upcoming: list[Occurrence]) -> None:
        """One DateTrigger job per upcoming due time, so occurrences run on time, not on the next tick."""
        if self.scheduler is None:
            return
        wanted = {f"due:{o.due:%Y%m%dT%H%M%S}": o.due for o in upcoming}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("due:") and job.id not in wanted:
                job.remove()
        for job_id, due in wanted.items():
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(self.tick, DateTrigger(run_date=due), id=job_id)

    async def stop(self) -> None:
        self.runner.stopping = True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self._ticks:  # a tick cancelled at exit was logged by APScheduler as a failed job
            await asyncio.wait(set(self._ticks), timeout=15)
        if self._sweeping is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sweeping), timeout=15)
            except TimeoutError:
                self._sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeping
        with contextlib.suppress(Exception):
            await instances.release(self.app.db, self.runner.owner)
        log.info("scheduler stopped")
