"""Qingfeng 清风."""

import sys

# httpx imports its command-line client (rich.syntax, pygments: ~0.1 s of every start) when
# click and rich are installed, as they are for typer. We never run it, and httpx falls back
# to a stub when that import fails (encode/httpx#3547), so block that one module.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
