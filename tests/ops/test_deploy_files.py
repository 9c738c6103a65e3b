"""deploy/: the compose file validates and fails loudly without its required variables, the
.env example documents every setting with valid defaults, the Dockerfile has what the issue
asks for (and its HEALTHCHECK command really probes /healthz), the systemd unit verifies.

`docker compose config` / `docker-compose config` run where installed; a Docker daemon is not
needed for that, and `docker build` is not attempted here."""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Settings, load_settings
from bot.web import build_web_app
from tests.ops.test_web import free_port, serving

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FILLED = {"POSTGRES_PASSWORD": "4f1c0d9e8b7a6f5e4d3c2b1a", "PUBLIC_URL": "https://qingfeng.example.org"}


# --- compose ----------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str], errors: list[str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} (and the colon-less forms)."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, errors) for v in node]
    if not isinstance(node, str):
        return node

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("?") and unset:
            errors.append(f"{name}: {arg}")
            return ""
        if op and op.endswith("-") and unset:
            return arg
        return value or ""

    return _VAR.sub(one, node)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))


def test_compose_structure():
    doc = compose()
    services = doc["services"]
    assert set(services) == {"postgres", "migrate", "bot", "redis"}
    pg = services["postgres"]
    assert pg["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")[0]
    assert volume in doc["volumes"]  # a named volume: data survives re-creating the container
    migrate, bot = services["migrate"], services["bot"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert bot["command"] == ["run"]
    assert bot["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                 "migrate": {"condition": "service_completed_successfully"}}
    for svc in (migrate, bot):
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert svc["env_file"] == ".env"
        env = svc["environment"]
        assert env["QINGFENG_DATABASE_URL"].startswith("postgresql://qingfeng:${POSTGRES_PASSWORD:?")
        assert env["QINGFENG_TELEGRAM_WEBHOOK_URL"].endswith("/telegram/webhook")  # webhook mode
        assert env["QINGFENG_HTTP_HOST"] == "0.0.0.0"
        assert set(env) <= {f"QINGFENG_{k.upper()}" for k in Settings.model_fields}  # no typos in keys
    assert bot["ports"] == ["${QINGFENG_PUBLISH:-127.0.0.1:8080}:8080"]  # loopback unless told otherwise
    assert services["redis"]["profiles"] == ["redis"]  # optional
    assert "healthcheck" in services["redis"]


def test_compose_interpolates_with_a_filled_env_and_fails_loudly_without():
    errors: list[str] = []
    resolved = interpolate(compose(), FILLED, errors)
    assert errors == []
    env = resolved["services"]["bot"]["environment"]
    assert env["QINGFENG_DATABASE_URL"] == f"postgresql://qingfeng:{FILLED['POSTGRES_PASSWORD']}@postgres:5432/qingfeng"
    assert env["QINGFENG_TELEGRAM_WEBHOOK_URL"] == "https://qingfeng.example.org/telegram/webhook"
    assert resolved["services"]["bot"]["ports"] == ["127.0.0.1:8080:8080"]
    # The resolved values are what Settings accepts.
    settings = load_settings(**{k.removeprefix("QINGFENG_").lower(): v for k, v in env.items()})
    assert settings.database_url.startswith("postgresql+asyncpg://") and settings.http_port == 8080

    missing: list[str] = []
    interpolate(compose(), {"POSTGRES_PASSWORD": ""}, missing)
    assert {m.split(":")[0] for m in missing} == {"POSTGRES_PASSWORD", "PUBLIC_URL"}
    assert all("deploy/.env" in m for m in missing)  # the message says where to fix it


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(_compose_command() is None, reason="neither `docker compose` nor docker-compose installed")
def test_docker_compose_config_accepts_the_file(tmp_path):
    command = _compose_command()
    assert command is not None
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    env = {k: v for k, v in os.environ.items() if k not in FILLED and not k.startswith("QINGFENG_")}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in FILLED.items()), "utf-8")
    ok = subprocess.run([*command, "-f", "compose.yaml", "config"], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "postgresql://qingfeng:" in ok.stdout and "/telegram/webhook" in ok.stdout
    (tmp_path / ".env").write_text("PUBLIC_URL=https://qingfeng.example.org\n", "utf-8")
    bad = subprocess.run([*command, "-f", "compose.yaml", "config"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "POSTGRES_PASSWORD" in bad.stderr


# --- .env.example ----------------------------------------------------------------------------

_KEY = re.compile(r"^#?\s*(QINGFENG_[A-Z0-9_]+|POSTGRES_PASSWORD|PUBLIC_URL)=(.*)$")


def env_example() -> list[tuple[str, str, str]]:
    """(key, value, the comment right above it) for each setting line."""
    lines = (DEPLOY / ".env.example").read_text("utf-8").splitlines()
    found = []
    for i, ln in enumerate(lines):
        m = _KEY.match(ln)
        if m:
            above = lines[i - 1] if i else ""
            found.append((m.group(1), m.group(2), above))
    return found


def test_env_example_lists_every_setting_with_a_comment():
    entries = env_example()
    keys = [k for k, _, _ in entries]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    expected = {f"QINGFENG_{name.upper()}" for name in Settings.model_fields}
    assert expected - set(keys) == set(), "settings missing from deploy/.env.example"
    assert set(keys) - expected == {"POSTGRES_PASSWORD", "PUBLIC_URL", "QINGFENG_PUBLISH", "QINGFENG_IMAGE"}
    for key, _, above in entries:
        assert above.startswith("#") and not _KEY.match(above), f"{key} needs a comment line above it"


def test_env_example_defaults_are_the_real_defaults():
    # Values shown in the example are accepted by Settings and equal its defaults, except where
    # the example recommends a production value on purpose.
    recommended = {"QINGFENG_DATABASE_URL"}
    defaults = Settings.model_fields
    for key, value, _ in env_example():
        name = key.removeprefix("QINGFENG_").lower()
        if name not in defaults or not value or key in recommended:
            continue
        loaded = getattr(load_settings(**{name: value}), name)
        assert loaded == defaults[name].default, key


def test_env_example_values_are_compose_and_systemd_compatible():
    for ln in (DEPLOY / ".env.example").read_text("utf-8").splitlines():
        if ln and not ln.startswith("#"):
            key, _, value = ln.partition("=")
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), ln
            assert not value.startswith(("'", '"')) and " #" not in value, ln


# --- Dockerfile -------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text("utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for ln in joined.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            op, _, rest = ln.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    return ins[last_from:]


def test_dockerfile_slim_locked_non_root_fonts_healthcheck_entrypoint():
    ins = instructions()
    args = dict(rest.split("=", 1) for op, rest in ins if op == "ARG" and "=" in rest)
    assert "slim" in args["PYTHON_IMAGE"]
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "uv sync --frozen --no-dev" in runs  # exactly uv.lock's versions
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    uv_pin = next(d for d in pyproject["dependency-groups"]["dev"] if d.startswith("uv=="))
    assert f"pip install {uv_pin}" in runs  # the same uv as the Makefile
    final = final_stage()
    final_runs = " ".join(rest for op, rest in final if op == "RUN")
    assert "fonts-noto-cjk" in final_runs and "--no-install-recommends" in final_runs
    users = [rest for op, rest in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(op == "HEALTHCHECK" and "/healthz" in rest for op, rest in final)
    entry = next(rest for op, rest in final if op == "ENTRYPOINT")
    cmd = next(rest for op, rest in final if op == "CMD")
    assert "qingfeng" in entry and cmd == '["run"]'
    for op, rest in ins:  # every COPY from the build context exists
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _dest = shlex.split(rest)
            for src in sources:
                assert (ROOT / src).exists(), src
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").split()
    assert ".venv" in ignore and "deploy/.env" in ignore and ".git" in ignore


def healthcheck_command() -> list[str]:
    rest = next(rest for op, rest in final_stage() if op == "HEALTHCHECK")
    exec_form = rest[rest.index("CMD") + 3:].strip()
    return yaml.safe_load(exec_form)  # a JSON array


async def test_dockerfile_healthcheck_command_probes_healthz(sqlite_app):
    command = healthcheck_command()
    assert command[0] == "python"

    def probe(port: int) -> int:
        env = {**os.environ, "QINGFENG_HTTP_PORT": str(port)}
        return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode

    async with serving(build_web_app(sqlite_app.db)) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].rstrip("/"))
        assert await asyncio.to_thread(probe, port) == 0
    assert await asyncio.to_thread(probe, free_port()) != 0  # nothing listening: unhealthy


# --- systemd ----------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "qingfeng.service").read_text("utf-8"))
    return parser


def test_systemd_unit_has_the_hardening_the_issue_asks_for():
    svc = unit()["Service"]
    assert svc["EnvironmentFile"] == "/etc/qingfeng/qingfeng.env"
    assert svc["Restart"] == "on-failure"
    assert svc["ExecStart"].endswith("qingfeng run")
    assert svc["User"] == "qingfeng"
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["ProtectHome"] == "yes" and svc["PrivateTmp"] == "yes"
    assert svc["CapabilityBoundingSet"] == ""
    assert "/var/lib/qingfeng" in svc["ReadWritePaths"]
    assert "sqlite:////var/lib/qingfeng/" in (DEPLOY / "qingfeng.service").read_text("utf-8")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_silent(tmp_path):
    # Point the unit at this checkout's executable so verify can check everything else.
    text = (DEPLOY / "qingfeng.service").read_text("utf-8")
    qingfeng = Path(sys.executable).with_name("qingfeng")
    if not qingfeng.exists():
        pytest.skip("the qingfeng console script is not installed in this environment")
    target = tmp_path / "qingfeng.service"
    target.write_text(text.replace("/opt/qingfeng/.venv/bin/qingfeng", str(qingfeng)), "utf-8")
    res = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "" and res.stderr.strip() == "", res.stderr


# --- docs ---------------------------------------------------------------------------------------

DOCS = sorted((ROOT / "docs").glob("deploy-*.md")) + sorted((ROOT / "docs").glob("setup-*.md"))


def test_deploy_docs_exist_in_chinese():
    names = {p.name for p in DOCS}
    assert {"setup-telegram.md", "setup-wechat.md", "setup-wecom.md", "deploy-single-machine.md",
            "deploy-compose.md", "deploy-operations.md"} <= names
    for p in DOCS:
        text = p.read_text("utf-8")
        han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert han > 300, p.name


def test_deploy_docs_name_only_real_settings_commands_and_files():
    from typer.main import get_command

    from bot.cli import app

    settings = {f"QINGFENG_{k.upper()}" for k in Settings.model_fields}
    extra = {"QINGFENG_CONFIG", "QINGFENG_PUBLISH", "QINGFENG_IMAGE", "QINGFENG_TEST_POSTGRES_URL"}
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for p in DOCS:
        text = p.read_text("utf-8")
        for key in re.findall(r"QINGFENG_[A-Z0-9_]*[A-Z0-9]", text):
            assert key in settings | extra, f"{p.name}: unknown setting {key}"
        code = "\n".join(re.findall(r"```.*?```|`[^`\n]+`", text, flags=re.S))
        # In command position only: line start, after a path, `&&`, a pipe or an opening backtick.
        used = re.findall(r"(?:^\s*`?|/bin/|&&\s+|\|\s+)(?:qingfeng|qf) ([a-z][a-z-]*)", code, flags=re.M)
        used += re.findall(r"run --rm (?:-T )?(?:-v \S+ )?bot ([a-z][a-z-]*)", code)
        for cmd in used:
            # `qingfeng cd …` is the crontab's user column, not a command.
            assert cmd in commands or cmd == "cd", f"{p.name}: unknown command qingfeng {cmd}"
        for ref in re.findall(r"\]\(([\w-]+\.md)(?:#[^)]*)?\)", text):
            assert (ROOT / "docs" / ref).exists(), f"{p.name}: broken link {ref}"
        for path in re.findall(r"\b(deploy/[\w.-]+|bot/[\w/.-]+\.py)\b", text):
            made = path == "deploy/.env"  # the operator creates it from .env.example
            assert made or (ROOT / path).exists(), f"{p.name}: no such file {path}"
