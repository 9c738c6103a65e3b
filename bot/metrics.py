"""Prometheus metrics: counters other modules increment, gauges read from the database at scrape.

Names (all prefixed `qingfeng_`): pushes_total{kind}, sends_total{platform,status},
send_latency_seconds{platform}, answers_total{channel}, errors_total{kind},
component_up{component}; and, read from the database at scrape time so every replica
reports the same truth: deliveries{status}, notifications{status}, scheduler_lag_seconds
and scheduler_last_claim_timestamp_seconds.
Labels never carry member names, chat ids or item ids: cardinality stays small and no
personal data leaves through /metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

PUSHES = Counter("qingfeng_pushes", "Push runs that had rows to send, by kind (round, notification)",
                 ["kind"], registry=REGISTRY)
SENDS = Counter("qingfeng_sends", "Messages handed to a platform, by outcome (sent, failed, blocked)",
                ["platform", "status"], registry=REGISTRY)
SEND_LATENCY = Histogram("qingfeng_send_latency_seconds", "Time to send one push to one chat, retries included",
                         ["platform"], registry=REGISTRY,
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
ANSWERS = Counter("qingfeng_answers", "Answers recorded (first answers only, replays not counted), by channel",
                  ["channel"], registry=REGISTRY)
ERRORS = Counter("qingfeng_errors", "Errors by kind: send (a send failed after retries) or the component "
                 "that logged an ERROR", ["kind"], registry=REGISTRY)
SCHEDULER_LAG = Gauge("qingfeng_scheduler_lag_seconds",
                      "How late the most recently claimed scheduler occurrence was claimed after its planned time",
                      registry=REGISTRY)
SCHEDULER_LAST = Gauge("qingfeng_scheduler_last_claim_timestamp_seconds",
                       "When a scheduler occurrence was last claimed (Unix time; 0 = never)", registry=REGISTRY)
COMPONENT_UP = Gauge("qingfeng_component_up", "1 when a runtime component (channel, scheduler) has started",
                     ["component"], registry=REGISTRY)
DELIVERIES = Gauge("qingfeng_deliveries", "Round deliveries in the database, by status", ["status"],
                   registry=REGISTRY)
NOTIFICATIONS = Gauge("qingfeng_notifications", "Reminders, digests and case pushes in the database, by status",
                      ["status"], registry=REGISTRY)

T = TypeVar("T")


async def observe_send(platform: str, sending: Awaitable[T]) -> T:
    """Await one send, recording its latency and outcome (`outcome.status`)."""
    start = time.perf_counter()
    outcome = await sending
    SEND_LATENCY.labels(platform).observe(time.perf_counter() - start)
    status = str(getattr(outcome, "status", "unknown"))
    SENDS.labels(platform, status).inc()
    if status == "failed":
        ERRORS.labels("send").inc()
    return outcome


def count_push(kind: str) -> None:
    PUSHES.labels(kind).inc()


def count_answer(channel: str) -> None:
    ANSWERS.labels(channel).inc()


def error_kind(logger_name: str) -> str:
    """A small label for the component behind a logger: bot.channels.telegram.x → telegram."""
    parts = logger_name.split(".")
    if parts[0] == "bot" and len(parts) > 1:
        parts = parts[1:]
    if parts[0] == "channels" and len(parts) > 1:
        parts = parts[1:]
    return parts[0][:40] or "root"


def record_logged_error(logger_name: str) -> None:
    ERRORS.labels(error_kind(logger_name)).inc()


async def refresh_from_db(db: Any) -> None:
    """Set the database-backed gauges (called by /metrics before rendering). Every replica reads
    the same rows, so any one of them reports the whole deployment."""
    await _status_counts(db)
    await _scheduler_lag(db)


async def _scheduler_lag(db: Any) -> None:
    # A claim row holds the occurrence's planned time and when a process claimed it (scheduler/jobs.py).
    from bot.storage.models import JobClaim

    try:
        async with db.session() as session:
            row = (await session.exec(select(JobClaim.occurrence, JobClaim.claimed_at)
                                      .order_by(JobClaim.claimed_at.desc()).limit(1))).first()
    except SQLAlchemyError as exc:
        log.warning("metrics: reading scheduler claims failed: %s", type(exc).__name__)
        return
    if row is None:
        SCHEDULER_LAG.set(0)
        SCHEDULER_LAST.set(0)
        return
    planned, claimed = row
    SCHEDULER_LAG.set(max(0.0, (claimed - planned).total_seconds()))
    SCHEDULER_LAST.set(claimed.timestamp())


async def _status_counts(db: Any) -> None:
    from bot.storage.models import Delivery, DeliveryStatus, Notification

    for gauge, model in ((DELIVERIES, Delivery), (NOTIFICATIONS, Notification)):
        try:
            async with db.session() as session:
                rows = (await session.exec(select(model.status, func.count()).group_by(model.status))).all()
        except SQLAlchemyError as exc:  # e.g. not migrated yet: the other metrics still render
            log.warning("metrics: counting %s rows failed: %s", model.__tablename__, type(exc).__name__)
            continue
        counts = {str(status): n for status, n in rows}
        for status in {*map(str, DeliveryStatus), *counts}:
            gauge.labels(status).set(counts.get(status, 0))


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
