"""Kill test: a real `qingfeng run` pushing a round to 301 members through the webhook channel is
killed with SIGKILL at random points, then restarted. Every member must end up with exactly one
delivery of each round at the receiver: 0 duplicates, 0 gaps.

The processes form a chain: process i is killed during round i; process i+1 finishes round i on
start-up and is then killed during round i+1 (a campaign created while it runs). Half the kills
happen inside the receiver, after it accepted the k-th message and before it answers (the moment
that leaves a row 'sending'); the others after a random delay (before the round opens, while it
opens, mid fan-out or after it).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import start_app
from tests.conftest import make_settings
from tests.factories import build_org
from tests.scheduler.procs import bot_env, round_finished, round_for, start_bot, stop_bot, wait_for
from tests.scheduler.support import bind_all, schedule

TRIALS = 10


@pytest.mark.slow
async def test_sigkill_at_random_points_leaves_no_duplicates_and_no_gaps(database_url, webhook, tmp_path):
    seed = int(os.environ.get("QINGFENG_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    app = await start_app(make_settings(database_url), upgrade=False)  # the real clock, like the bot
    try:
        tree = await build_org(app, branches=3, per_branch=99, bind=False)
        externals = await bind_all(app, [m.id for m in tree.all_members()] + [tree.admin.id])
        assert len(externals) == 301
        now = datetime.now(UTC)
        await schedule(app, tree.root, "quiet_hours", {}, enabled=False, changed=now - timedelta(days=1))

        async def new_campaign(i: int) -> str:
            at = datetime.now(UTC)
            row = await schedule(app, tree.root, "campaign", {
                "at": at.isoformat(), "deadline": (at + timedelta(days=1)).isoformat(),
                "items": ["t-single-001", "t-judge-001"], "title": f"专题{i}"}, name=f"kill-{i}", changed=at)
            return f"campaign:s{row.id}@"

        env = bot_env(database_url, webhook.url)
        log = tmp_path / "bot.log"
        prefix = await new_campaign(0)
        proc = start_bot(env, tmp_path, log)
        outcomes = []
        for i in range(TRIALS):
            in_receiver = i % 2 == 0
            base = len(webhook.delivered())
            k = rng.randint(1, 301)
            victim = proc

            def kill_at_kth(_post: object, count: int, base: int = base, k: int = k,
                            victim: subprocess.Popen[bytes] = victim) -> None:
                if count - base == k:
                    victim.send_signal(signal.SIGKILL)

            if in_receiver:
                webhook.on_delivery = kill_at_kth
                try:
                    victim.wait(timeout=120)
                finally:
                    webhook.on_delivery = None
                where = f"in the receiver at message {k}/301"
            else:
                delay = rng.uniform(0, 1.5)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    victim.wait(timeout=delay)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                where = f"{delay:.2f} s after the campaign"
            assert victim.returncode == -signal.SIGKILL, f"process ended on its own ({victim.returncode})"
            proc = start_bot(env, tmp_path, log)  # the restart finishes the round
            await wait_for(lambda prefix=prefix: round_for(app, prefix), timeout=120, what="the round to open")
            rnd = await round_for(app, prefix)
            await wait_for(lambda rid=rnd.id: round_finished(app, rid), timeout=120, what="the fan-out")
            per = webhook.delivered_per_recipient(key_prefix=f"round:{rnd.id}:")
            gaps = sorted(set(externals.values()) - set(per))
            duplicates = {r: n for r, n in per.items() if n != 1}
            outcomes.append((where, len(per), len(gaps), len(duplicates), webhook.repeats(f"round:{rnd.id}:")))
            assert not gaps and not duplicates, f"trial {i} (seed {seed}, killed {where}): {outcomes[-1]}"
            if i + 1 < TRIALS:
                prefix = await new_campaign(i + 1)
        assert stop_bot(proc) == 0
    finally:
        await app.db.dispose()
    print(f"\nkill test seed {seed}: (where, members reached, gaps, duplicates, resends dropped by key)")
    for o in outcomes:
        print("  ", o)
    text = log.read_text("utf-8", errors="replace")
    assert "党员" not in text and "webhook-" not in text, "names or chat ids in the log"
    assert "round" in text and "pushed: sent=" in text  # progress and counts are logged
