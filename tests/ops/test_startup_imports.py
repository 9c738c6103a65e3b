"""Start-up footprint, as behaviour: what `qingfeng run` imports (issue #8: start-up to ready <= 2 s).

Heavy libraries used only by reports, exports, charts or optional channels must be imported where
they are used, not when the runtime is imported. A fresh interpreter shows what an import pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.ops.cli import PYCACHE, ROOT

# What `qingfeng run` imports with Telegram and the scheduler configured (as bench/footprint.py).
RUNTIME = ("bot.cli", "bot.runtime", "bot.web", "bot.logs", "bot.channels.telegram", "scheduler.runner")

# Only a report, chart, export, migration or optional channel needs these; a process needs
# only its own database's SQLAlchemy dialect (the runtime here is configured for SQLite).
NOT_AT_START = ("numpy", "scipy", "matplotlib", "mplfonts", "PIL", "docx", "openpyxl", "wechatpy", "redis",
                "alembic", "rich.progress", "rich.table", "sqlalchemy.dialects.postgresql")


def imported_after(modules: tuple[str, ...]) -> set[str]:
    code = (f"import json, sys\nimport {', '.join(modules)}\n"
            "print(json.dumps(sorted(sys.modules)))")
    env = {"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return set(json.loads(out))


def test_runtime_imports_no_report_export_or_optional_channel_libraries() -> None:
    loaded = imported_after(RUNTIME)
    assert "bot.runtime" in loaded and "telegram" in loaded  # the probe did import the runtime
    assert {m for m in NOT_AT_START if m in loaded} == set()
