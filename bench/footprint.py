"""Footprint (issue #8, benchmark 4): memory and start-up of a real `qingfeng run`.

A database is seeded with 10,000 members bound to Telegram chats and a synthetic bank of
1,000 items (the shipped bank repeated with fresh ids, as bench/bank_load.py builds it).
`qingfeng run` is started as a subprocess with the Telegram channel (polling the fake Bot API,
served from another process) and the scheduler, and:

- start-up to ready: from spawning the process to the first 200 from /readyz (database,
  migrations and every component up); the first start compiles bytecode (into a private
  PYTHONPYCACHEPREFIX), the median of the next `--starts` starts uses it, as the Docker image does;
- CPU time to ready: the process's user + system time at that moment, which a busy machine
  stretches much less than the wall time; and, where `perf` is installed, the user-space
  instructions of `--perf-starts` more starts (to ready and a clean stop), which it does not
  stretch at all;
- resident memory: VmRSS from /proc/<pid>/status once ready and again after `--settle` s,
  plus the peak (VmHWM);
- bank load and validation of the 1,000 items (`load_bank`), against a bare libyaml parse.

Baseline (same run): a Python process that only imports what `qingfeng run` imports
(runtime, Telegram channel, scheduler) — its start-up time and its RSS.

Targets: RSS <= 200 MB; bank load of 1,000 items <= 0.5 s; start-up to ready <= 2 s.

    .venv/bin/python -m bench.footprint                      # issue sizes, SQLite and PostgreSQL
    .venv/bin/python -m bench.footprint --quick --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench.bank_load import synthetic_bank
from bench.common import ROOT, database, machine, median_time, table
from bench.tgfake import TOKEN, FakeProcess
from bench.world import backend_arg, backends, seeded_app, settings_for
from question_bank import load_bank

TARGET_RSS_MB = 200.0
TARGET_BANK_S = 0.5
TARGET_READY_S = 2.0
PYTHON = str(ROOT / ".venv" / "bin" / "python")
QINGFENG = str(ROOT / ".venv" / "bin" / "qingfeng")
IMPORTS = ("import os, bot.cli, bot.runtime, bot.web, bot.channels.telegram, scheduler.runner; "
           "print(open('/proc/self/status').read()); t = os.times(); print('CPU:', t.user + t.system)")


def status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (less sensitive to a busy machine than wall)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def perf_command(out: Path) -> list[str]:
    """`perf stat` counting user-space instructions: a measure of work a busy machine does not stretch."""
    return ["perf", "stat", "-x,", "-o", str(out), "-e", "instructions:u", "--"]


def perf_instructions(out: Path) -> float:
    """Billions of instructions from a `perf stat -x,` output file."""
    for line in out.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
            return int(fields[0]) / 1e9
    raise RuntimeError(f"no instruction count in {out}")


def perf_counts() -> bool:
    """Whether `perf stat` can count instructions here: installed is not enough (on many VMs
    the hardware counters are "<not supported>")."""
    if not shutil.which("perf"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.txt"
        try:
            subprocess.run([*perf_command(out), "true"], capture_output=True, timeout=30, check=False)
            perf_instructions(out)
        except (OSError, RuntimeError, subprocess.SubprocessError):
            return False
    return True


def child_pid(pid: int) -> int:
    """The process `perf stat` started (perf forks it and waits)."""
    for _ in range(500):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise RuntimeError("perf did not start its command")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_env(cache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with bytecode caching on, into `cache` (the Docker image ships compiled
    bytecode; a checkout run with PYTHONDONTWRITEBYTECODE=1 compiles every module on each start)."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(cache), **(extra or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_baseline(cache: Path, perf_out: Path | None = None) -> tuple[float, float, float]:
    """(seconds, RSS MB, CPU seconds) of a process that imports the runtime's modules and exits."""
    t = time.perf_counter()
    prefix = perf_command(perf_out) if perf_out is not None else []
    out = subprocess.run([*prefix, PYTHON, "-c", IMPORTS], cwd=ROOT, capture_output=True, text=True, check=True,
                         env=python_env(cache)).stdout
    wall = time.perf_counter() - t
    rss = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("VmRSS:"))
    cpu = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("CPU:"))
    return wall, rss / 1024, cpu


def start_once(env: dict[str, str], port: int, cwd: Path, settle: float,
               perf_out: Path | None = None) -> tuple[float, float, float, float, float]:
    """Start `qingfeng run`, wait for /readyz; (seconds to ready, RSS MB at ready, after settling,
    peak, CPU seconds to ready). With `perf_out`, it runs under `perf stat` (counted until it stops)."""
    t = time.perf_counter()
    prefix = perf_command(perf_out) if perf_out is not None else []
    proc = subprocess.Popen([*prefix, QINGFENG, "run"], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bot = child_pid(proc.pid) if perf_out is not None else proc.pid
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"qingfeng run exited {proc.returncode}: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - t > 60:
                    raise RuntimeError("qingfeng run not ready within 60 s")
                time.sleep(0.01)
        ready = time.perf_counter() - t
        cpu = cpu_seconds(bot)
        rss_ready = status_kb(bot, "VmRSS") / 1024
        time.sleep(settle)
        rss_settled = status_kb(bot, "VmRSS") / 1024
        peak = status_kb(bot, "VmHWM") / 1024
        return ready, rss_ready, rss_settled, peak, cpu
    finally:
        os.kill(bot, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def prepare(url: str, bank: Path, members: int) -> None:
    app = await seeded_app(settings_for(url, bank_path=bank), members=members)
    await app.db.dispose()


def one_backend(kind: str, url: str, bank: Path, workdir: Path, args: argparse.Namespace,
                base_wall: float, base_rss: float, base_cpu: float, base_instr: float) -> list[list[object]]:
    asyncio.run(prepare(url, bank, args.members))
    runs = []
    with FakeProcess() as fake:

        def start(settle: float) -> tuple[float, float, float, float, float]:
            port = free_port()
            env = python_env(workdir / f"pycache-{kind}", {
                "QINGFENG_DATABASE_URL": url, "QINGFENG_BANK_PATH": str(bank), "QINGFENG_HTTP_PORT": str(port),
                "QINGFENG_TELEGRAM_TOKEN": TOKEN, "QINGFENG_TELEGRAM_BASE_URL": fake.base_url,
                "QINGFENG_LOG_LEVEL": "WARNING"})
            return start_once(env, port, workdir, settle)

        for n in range(args.starts + 1):  # the first start fills this backend's bytecode cache
            runs.append(start(args.settle if n else 0))
        instructions = []
        for n in range(args.perf_starts):
            out = workdir / f"perf-{kind}-{n}.txt"
            port = free_port()
            env = python_env(workdir / f"pycache-{kind}", {
                "QINGFENG_DATABASE_URL": url, "QINGFENG_BANK_PATH": str(bank), "QINGFENG_HTTP_PORT": str(port),
                "QINGFENG_TELEGRAM_TOKEN": TOKEN, "QINGFENG_TELEGRAM_BASE_URL": fake.base_url,
                "QINGFENG_LOG_LEVEL": "WARNING"})
            start_once(env, port, workdir, 0, perf_out=out)
            instructions.append(perf_instructions(out))
        # A start after the bank files changed writes the whole bank again (unchanged: skipped).
        edited = sorted((bank / "items").glob("*.yaml"))[0]
        original = edited.read_bytes()
        edited.write_bytes(original + b"\n# edited\n")
        try:
            resync = start(0)
        finally:
            edited.write_bytes(original)
    cold, runs = runs[0][0], runs[1:]
    ready = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[4] for r in runs)
    rss_ready = max(r[1] for r in runs)
    rss_settled = max(r[2] for r in runs)
    peak = max(r[3] for r in runs)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    perf_rows = [[kind, f"user-space instructions, start to ready and stop (median of {len(instructions)})",
                  f"{statistics.median(instructions):.2f} G", "–",
                  f"{statistics.median(instructions) / base_instr:.1f}" if base_instr else "–"]] if instructions else []
    rows = [
        [kind, "start-up to ready, compiling bytecode (first start)", f"{cold:.2f} s", "–",
         f"{cold / base_wall:.1f}"],
        [kind, f"start-up to ready, bytecode cached (median of {args.starts})", f"{ready:.2f} s",
         f"≤ {TARGET_READY_S:g} s: {verdict(ready <= TARGET_READY_S)}", f"{ready / base_wall:.1f}"],
        [kind, f"CPU time to ready, user + system (median of {args.starts})", f"{cpu:.2f} s", "–",
         f"{cpu / base_cpu:.1f}"],
        [kind, "start-up to ready after a bank edit (whole bank re-synced; time / CPU)",
         f"{resync[0]:.2f} s / {resync[4]:.2f} s", "–", f"{resync[0] / base_wall:.1f}"],
        [kind, "RSS at ready", f"{rss_ready:.0f} MB",
         f"≤ {TARGET_RSS_MB:.0f} MB: {verdict(rss_ready <= TARGET_RSS_MB)}", f"{rss_ready / base_rss:.1f}"],
        [kind, f"RSS {args.settle:g} s later / peak (VmHWM)", f"{rss_settled:.0f} / {peak:.0f} MB",
         f"≤ {TARGET_RSS_MB:.0f} MB: {verdict(peak <= TARGET_RSS_MB)}", f"{peak / base_rss:.1f}"],
    ]
    return [*rows[:4], *perf_rows, *rows[4:]]


def main(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bank = synthetic_bank(work)
        files = sorted((bank / "items").glob("*.yaml"))
        bare = median_time(lambda: [yaml.load(f.read_text("utf-8"), Loader=yaml.CSafeLoader) for f in files])
        full = median_time(lambda: load_bank(bank))
        n_items = len(load_bank(bank).items)
        cache = work / "pycache-baseline"
        import_baseline(cache)  # compiles into the cache
        base = [import_baseline(cache) for _ in range(3)]
        base_wall, base_rss = statistics.median(b[0] for b in base), max(b[1] for b in base)
        base_cpu = statistics.median(b[2] for b in base)
        base_instr = 0.0
        if args.perf_starts:
            counts = []
            for n in range(args.perf_starts):
                import_baseline(cache, perf_out=work / f"perf-import-{n}.txt")
                counts.append(perf_instructions(work / f"perf-import-{n}.txt"))
            base_instr = statistics.median(counts)
        rows.append(["–", "baseline: bare libyaml parse of the bank", f"{bare:.3f} s", "–", "1.0"])
        rows.append(["–", f"load_bank ({n_items} items, parse + validation)", f"{full:.3f} s",
                     f"≤ {TARGET_BANK_S:g} s: {'met' if full <= TARGET_BANK_S else 'NOT met'}", f"{full / bare:.1f}"])
        rows.append(["–", "baseline: python importing the runtime, bytecode cached (time / CPU / RSS)",
                     f"{base_wall:.2f} s / {base_cpu:.2f} s / {base_rss:.0f} MB", "–", "1.0"])
        if base_instr:
            rows.append(["–", "baseline: user-space instructions importing the runtime", f"{base_instr:.2f} G", "–",
                         "1.0"])
        for kind in backends(args.backend):
            with database(kind, work) as url:
                rows += one_backend(kind, url, bank, work, args, base_wall, base_rss, base_cpu, base_instr)
    print(f"machine: {machine()}")
    print(f"{args.members} members bound to Telegram, {n_items}-item bank; `qingfeng run` with Telegram "
          f"(polling the fake Bot API) and the scheduler\n")
    print(table(["db", "what", "measured", "target", "ratio to baseline"], rows))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--starts", type=int, default=3, help="starts of `qingfeng run` (median start-up time)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after ready for the second RSS reading")
    p.add_argument("--perf-starts", type=int, default=3 if perf_counts() else 0,
                   help="extra starts counted with `perf stat` (user-space instructions; 0: none; "
                        "default 3 when perf is installed and the machine lets it count)")
    p.add_argument("--quick", action="store_true", help="1,000 members, one start")
    backend_arg(p)
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.starts, args.settle = 1000, 1, 1.0
    return args


if __name__ == "__main__":
    main(parse())
