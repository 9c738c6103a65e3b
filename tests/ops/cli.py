"""Run the real `qingfeng` CLI in a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The environment may forbid .pyc files; then every subprocess recompiles matplotlib, SQLAlchemy …
# (seconds each). Let the children cache byte code outside the work tree instead.
PYCACHE = Path(tempfile.gettempdir()) / "qingfeng-test-pycache"


def run_cli(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("QINGFENG_") and k != "PYTHONDONTWRITEBYTECODE"}
    full.update({"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE), **(env or {})})
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=full, input=input,
                          capture_output=True, text=True, timeout=timeout)
