"""Reports (issue #8, benchmark 3): report latency on a large database.

One database per backend is seeded with `bot.dev.seed.seed` (default: 10,000 members,
300 branches, 50 weekly rounds of 5 items, about 1,000,000 answers). Then, warm cache,
median of several runs, each in a fresh session:

- baseline: the bare scan `SELECT item_id, count(*), sum(correct) FROM answer GROUP BY item_id`,
  as the database plans it and in one process (PostgreSQL plans it with parallel workers, whose
  CPU is not in the CPU column; the report's statements run in one backend);
- a branch (党支部) report: `full_report` for the latest round (what /report shows) and for
  the whole period (`qingfeng report --period 全部`);
- the 党委 subtree roll-up: `full_report` of the root for the latest round and the whole period;
- the item analysis of one round for the whole tree (round matrix query + statistics).

Targets: branch <= 100 ms, subtree <= 500 ms, ratio to the bare scan <= 1.5.

    .venv/bin/python -m bench.reports                        # issue sizes, SQLite and PostgreSQL
    .venv/bin/python -m bench.reports --quick --backend sqlite
    .venv/bin/python -m bench.reports --keep /tmp/qf-reports   # seed once, reuse on later runs

Besides wall time, each case reports the CPU time it used: this process (on SQLite the
database engine runs in it) plus, on PostgreSQL, the server backend that ran the session's
queries (read from /proc). On a machine shared with other work, CPU time and the ratio to the
bare scan (measured in the same minutes) are steadier than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.common import PG_ADMIN, database, machine, table
from bench.world import backend_arg, backends, measured, profiled, settings_for
from bot.app import App, start_app
from bot.dev.seed import seed
from bot.reports import queries
from bot.reports.fold import fold_finished_rounds
from bot.reports.period import parse_period, round_period
from bot.reports.report import _rounds, full_report
from bot.reports.stats import Scope, fill_working_set, latest_round_period
from bot.runtime import settle_heap
from bot.storage.db import make_engine
from bot.storage.models import Organization

BARE_SCAN = "SELECT item_id, count(*), sum(CAST(correct AS INTEGER)) FROM answer GROUP BY item_id"
TARGETS = {"branch": 0.100, "subtree": 0.500}
TARGET_RATIO = 1.5


def _normal(sql: str) -> str:
    sql = re.sub(r"(?<!:):[a-z_]+\b|\?", "?", sql)
    return " ".join(sql.split())


class QueryTimer:
    """Seconds per documented report query (bot/reports/queries.py), from SQLAlchemy's cursor
    events: which of a report's queries takes the time."""

    def __init__(self, engine: Any, dialect: str) -> None:
        self.engine = engine
        self.names: dict[str, str] = {}
        for q in [*vars(queries).values(), *(w.fill for w in queries.WORKING_SET),
                  *(w.folded_fill for w in queries.WORKING_SET if w.folded_fill)]:
            if isinstance(q, queries.Query):
                for single in (False, True):
                    self.names[_normal(queries.render(q, dialect, single_round=single))] = q.name
        self.seconds: dict[str, float] = {}
        self._started: list[float] = []

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        took = time.perf_counter() - self._started.pop()
        # The text as written (":name" parameters), not as the driver got it ("?" / "$1::TYPE").
        written = getattr(getattr(getattr(context, "compiled", None), "statement", None), "text", None)
        name = self.names.get(_normal(written or statement)) or "other: " + " ".join(statement.split())[:60]
        self.seconds[name] = self.seconds.get(name, 0.0) + took

    def __enter__(self) -> QueryTimer:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    def top(self, n: int = 6) -> str:
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {1000 * t:.0f} ms" for name, t in ranked)


def _backend_cpu(pid: int | None) -> float:
    """CPU seconds used so far by a local PostgreSQL backend (0 when it cannot be read)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def median_async(app: App, fn: Callable[[AsyncSession], Awaitable[Any]],
                       repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `fn` over `repeat` runs after one warm-up, a fresh session
    each. A case whose warm-up took over 5 s is timed once more only: that says how slow it is."""
    times, cpus = [], []
    for i in range(repeat + 1):
        async with app.db.session() as session:
            pid = None
            if app.db.dialect == "postgresql":
                pid = (await session.exec(text("SELECT pg_backend_pid()"))).one()[0]  # type: ignore[call-overload]
            t, c, b = time.perf_counter(), time.process_time(), _backend_cpu(pid)
            await fn(session)
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c + _backend_cpu(pid) - b)
        if i == 0 and times[0] > 5:
            repeat = 1
    return statistics.median(times[1:]), statistics.median(cpus[1:])


@asynccontextmanager
async def kept_database(kind: str, keep: Path) -> AsyncIterator[str]:
    """A database that outlives the run (`--keep`): a SQLite file in `keep`, or a PostgreSQL
    database named after the directory; seeded on the first run, reused afterwards."""
    keep.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        yield f"sqlite:///{keep / 'reports.db'}"
        return
    name = "qf_bench_keep_" + re.sub(r"[^a-z0-9]", "_", keep.name.lower())[:30]
    engine = make_engine(PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})).first()
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def one_backend(kind: str, url: str, args: argparse.Namespace) -> tuple[list[list[object]], str]:
    settings = settings_for(url)
    app = await start_app(settings)
    try:
        async with app.db.session() as session:
            already = (await session.exec(text("SELECT count(*) FROM answer"))).one()[0]  # type: ignore[call-overload]
        if already:
            # As the scheduler's tick would have (a database seeded before rounds were folded).
            folded = await fold_finished_rounds(app.db, datetime.now(UTC))
            if folded and kind == "postgres":  # as autovacuum would (it is off on this server)
                async with app.db.engine.connect() as conn:
                    vacuum = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await vacuum.exec_driver_sql("VACUUM (ANALYZE)")
            seeded = f"{kind}: reused a database seeded earlier ({already} answers; {folded} rounds folded now)"
        else:
            with measured() as span:
                report = await seed(app.db, members=args.members, answers=args.answers, branches=args.branches,
                                    rounds=args.rounds)
            seeded = (f"{kind}: seeded {report.members} members, {report.orgs} organisations, {report.rounds} "
                      f"rounds, {report.answers} answers in {span.wall:.0f} s")
        print(seeded, flush=True)
        tz, now, min_group = settings.tz, datetime.now(UTC), settings.report_min_group
        everything = parse_period("全部", now=now, tz=tz)
        assert everything is not None
        async with app.db.session() as session:
            root = (await session.exec(select(Organization).where(col(Organization.parent_id).is_(None)))).one()
            branch = (await session.exec(select(Organization).where(Organization.kind == "党支部")
                                         .order_by(col(Organization.id)))).first()
            assert branch is not None
            latest_root = await latest_round_period(session, root, now)
            latest_branch = await latest_round_period(session, branch, now)
            assert latest_root is not None and latest_branch is not None
            branch_members = (await session.exec(text(
                "SELECT count(*) FROM member WHERE org_id = :o").bindparams(o=branch.id))).one()[0]

        def report_of(org: Organization, period: Any) -> Callable[[AsyncSession], Awaitable[Any]]:
            return lambda s: full_report(s, org=org, period=period, min_group=min_group, tz=tz, now=now)

        analysis_scope = Scope(root, round_period(latest_root.round_id), tz)  # type: ignore[arg-type]

        async def analysis(s: AsyncSession) -> Any:  # the working set it reads, then the analysis
            await fill_working_set(s, analysis_scope)
            return await _rounds(s, analysis_scope, min_group)

        async def one_process_scan(s: AsyncSession) -> Any:
            # PostgreSQL runs the bare scan with parallel workers (two here, beside the backend:
            # three processes on two cores), whose CPU this process cannot see; the report's
            # statements (inserts into temporary tables, small reads) run in the backend alone.
            # The same scan in one process is the cost of one pass over the answers.
            await s.exec(text("SET LOCAL max_parallel_workers_per_gather = 0"))  # type: ignore[call-overload]
            return await s.exec(text(BARE_SCAN))  # type: ignore[call-overload]

        cases: list[tuple[str, str, Callable[[AsyncSession], Awaitable[Any]]]] = [
            ("baseline", "bare GROUP BY scan of answer", lambda s: s.exec(text(BARE_SCAN))),
            *([("baseline", "the same scan in one process", one_process_scan)] if kind == "postgres" else []),
            ("branch", f"branch report, latest round ({branch_members} members)", report_of(branch, latest_branch)),
            ("branch", f"branch report, {args.rounds} rounds", report_of(branch, everything)),
            ("subtree", "党委 roll-up, latest round", report_of(root, latest_root)),
            ("subtree", f"党委 roll-up, {args.rounds} rounds", report_of(root, everything)),
            ("analysis", "item analysis, one round, whole tree", analysis),
        ]
        results: list[tuple[str, str, float, float]] = []
        settle_heap()  # as `qingfeng run` does once started: the reports a secretary asks for run there
        for group, label, fn in cases:
            if args.only and group != "baseline" and not any(w in label for w in args.only):
                continue
            t, cpu = await median_async(app, fn, args.repeat)
            if args.profile is not None and group != "baseline":  # warm: imports and caches done
                with profiled(args.profile.with_name(f"{args.profile.stem}-{kind}-{len(results)}.prof")):
                    async with app.db.session() as session:
                        await fn(session)
            results.append((group, label, t, cpu))
            print(f"  {label}: {1000 * t:.0f} ms (CPU {1000 * cpu:.0f} ms)", flush=True)
            if args.by_query and group != "baseline":
                with QueryTimer(app.db.engine.sync_engine, app.db.dialect) as timer:
                    async with app.db.session() as session:
                        await fn(session)
                print(f"    by query: {timer.top(12)}", flush=True)
        return _rows(kind, results), seeded
    finally:
        await app.db.dispose()


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in backends(args.backend):
            if args.keep is not None:
                async with kept_database(kind, args.keep) as url:
                    r, note = await one_backend(kind, url, args)
            else:
                with database(kind, Path(tmp)) as url:
                    r, note = await one_backend(kind, url, args)
            rows += r
            notes.append(note)
    print(f"\nmachine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print("\n".join(notes) + "\n")
    print(table(["db", "what", "median ms", "CPU ms", "target", f"ratio to bare scan (≤ {TARGET_RATIO})",
                 "ratio to one-process scan", "CPU ratio"], rows))


def _rows(kind: str, measured: list[tuple[str, str, float, float]]) -> list[list[object]]:
    """Table rows: ratios to the bare scan as planned and in one process; CPU ratio to the latter
    (the CPU of one pass over the answers, wherever the database runs it)."""
    baselines = [m for m in measured if m[0] == "baseline"]
    (_, _, base, _), (_, _, single, single_cpu) = baselines[0], baselines[-1]  # SQLite: one process anyway
    rows: list[list[object]] = []
    for group, label, t, cpu in measured:
        target = TARGETS.get(group)
        verdict = "–" if target is None else ("met" if t <= target else "NOT met")
        rows.append([kind, label, f"{1000 * t:.0f}", f"{1000 * cpu:.0f}",
                     f"≤ {1000 * target:.0f} ms: {verdict}" if target else "–",
                     _ratio(t / base, group), _ratio(t / single, group), f"{cpu / single_cpu:.1f}"])
    return rows


def _ratio(ratio: float, group: str) -> str:
    return f"{ratio:.1f}" + ("" if group == "baseline" else " (met)" if ratio <= TARGET_RATIO else " (NOT met)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--answers", type=int, default=1_000_000)
    p.add_argument("--branches", type=int, default=300)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case (median)")
    p.add_argument("--quick", action="store_true", help="1,000 members in 30 branches, 100,000 answers")
    p.add_argument("--by-query", action="store_true", help="time each report query once per case")
    p.add_argument("--profile", type=Path, help="cProfile one run of each case into <stem>-<db>-<n>.prof")
    p.add_argument("--keep", type=Path, help="seed a database kept in this directory once and reuse it later")
    p.add_argument("--only", action="append", help="run only the cases whose label contains this (repeatable)")
    backend_arg(p)
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.answers, args.branches = 1000, 100_000, 30
    return args


if __name__ == "__main__":
    asyncio.run(main_async(parse()))
