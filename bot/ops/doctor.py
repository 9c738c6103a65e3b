"""`qingfeng doctor`: check what `qingfeng run` needs and say what to fix, in Chinese.

Checks: settings (consistency of each channel's keys), the question bank, the database and
its migrations, a CJK font matplotlib can render with, and each configured channel's
credentials against the configured API base URLs (plain HTTP with short timeouts, so a
self-hosted Bot API server or a test fake is checked the same way). Nothing is written to
the database, and no secret is ever printed: details go through `bot.logs.redact` and the
configured secret values are masked as well.
"""

from __future__ import annotations

import asyncio
import importlib.util
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.logs import MASK, redact

DEFAULT_TIMEOUT = 5.0  # seconds per HTTP call or database probe
TELEGRAM_DEFAULT = "https://api.telegram.org"
WECHAT_DEFAULT = "https://api.weixin.qq.com"
WECOM_DEFAULT = "https://qyapi.weixin.qq.com"
CJK_SAMPLE = "清风廉政教育答题统计正确率支部书记"


class Status(StrEnum):
    ok = "ok"
    warn = "warn"
    fail = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, MASK)
    return redact(text)


def _secrets(s: Settings) -> list[str]:
    values = [s.telegram_token, s.telegram_webhook_secret, s.wechat_token, s.wechat_aes_key, s.wechat_secret,
              s.wecom_secret, s.wecom_token, s.wecom_aes_key, getattr(s, "webhook_secret", None)]
    out = [v.get_secret_value() for v in values if v is not None]
    url = make_url(s.database_url)
    if url.password:
        out.append(str(url.password))
    return out


def _root(url: str | None, default: str, *suffixes: str) -> str:
    """The server root of an API base URL as operators write it (with or without /bot, /cgi-bin)."""
    root = (url or default).rstrip("/")
    for suffix in suffixes:
        root = root.removesuffix(suffix)
    return root


# --- configuration --------------------------------------------------------------------------------


def configured_channels(s: Settings) -> list[str]:
    names = []
    if s.telegram_token:
        names.append("Telegram")
    if s.wechat_appid:
        names.append("公众号")
    if s.wecom_corpid:
        names.append("企业微信")
    if getattr(s, "webhook_push_url", None):
        names.append("Webhook")
    return names


def check_settings(s: Settings) -> list[Check]:
    channels = configured_channels(s)
    checks = [Check("配置", Status.ok, f"已读取；数据库：{'SQLite' if s.is_sqlite else 'PostgreSQL'}；"
                    f"渠道：{'、'.join(channels) or '无'}")]
    if not channels:
        checks.append(Check("渠道", Status.warn, "没有配置任何聊天渠道，qingfeng run 只会启动 HTTP 服务和定时任务",
                            "设置 QINGFENG_TELEGRAM_TOKEN、QINGFENG_WECHAT_APPID 或 QINGFENG_WECOM_CORPID"
                            "（见 docs/setup-*.md）"))
    if s.telegram_webhook_url and not s.telegram_webhook_url.startswith("https://"):
        checks.append(Check("Telegram 配置", Status.warn, "QINGFENG_TELEGRAM_WEBHOOK_URL 不是 https 地址",
                            "Telegram 只向 HTTPS 地址推送 webhook；请在反向代理上配置证书"))
    if s.wechat_appid:
        required: list[tuple[str, object]] = [("QINGFENG_WECHAT_TOKEN", s.wechat_token),
                                              ("QINGFENG_WECHAT_SECRET", s.wechat_secret)]
        missing = [k for k, v in required if v is None]
        if missing:
            checks.append(Check("公众号配置", Status.fail, "缺少 " + "、".join(missing),
                                "在公众号后台「设置与开发 → 基本配置」取得后填入（见 docs/setup-wechat.md）"))
        if s.wechat_aes_key is None:
            checks.append(Check("公众号配置", Status.warn, "未设置 QINGFENG_WECHAT_AES_KEY（明文模式）",
                                "建议在后台选择「安全模式」并填入 EncodingAESKey"))
        if not s.wechat_template_id:
            checks.append(Check("公众号配置", Status.warn,
                                "未设置 QINGFENG_WECHAT_TEMPLATE_ID：成员 48 小时内未发消息时推送会失败",
                                "在「广告与服务 → 模板消息」添加模板，把模板 ID 填入 QINGFENG_WECHAT_TEMPLATE_ID"))
    if s.wecom_corpid:
        required = [("QINGFENG_WECOM_SECRET", s.wecom_secret), ("QINGFENG_WECOM_AGENTID", s.wecom_agentid),
                    ("QINGFENG_WECOM_TOKEN", s.wecom_token), ("QINGFENG_WECOM_AES_KEY", s.wecom_aes_key)]
        missing = [k for k, v in required if v is None]
        if missing:
            checks.append(Check("企业微信配置", Status.fail, "缺少 " + "、".join(missing),
                                "在企业微信管理后台「应用管理 → 自建应用」取得后填入（见 docs/setup-wecom.md）"))
    return checks


def check_bank(s: Settings) -> Check:
    from question_bank import BankError, load_bank

    try:
        bank = load_bank(s.bank_path)
    except BankError as exc:
        first = "；".join(str(p) for p in exc.problems[:3])
        return Check("题库", Status.fail, f"{s.bank_path}：{len(exc.problems)} 个问题，例如 {first}",
                     f"运行 qingfeng bank check {s.bank_path} 查看全部问题，或检查 QINGFENG_BANK_PATH")
    except OSError as exc:
        return Check("题库", Status.fail, f"{s.bank_path}：无法读取（{type(exc).__name__}）",
                     "检查 QINGFENG_BANK_PATH 是否指向题库目录（含 vocabulary.yaml）")
    approved = len(bank.approved_items())
    return Check("题库", Status.ok, f"{len(bank.items)} 道题（{approved} 道已审核），{len(bank.cases)} 个案例")


# --- database ---------------------------------------------------------------------------------------


async def check_database(s: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[Check]:
    from bot.storage.db import Database
    from bot.web import DB_TIMEOUT, database_state

    if s.is_sqlite:
        path = make_url(s.database_url).database or ""
        if path and path != ":memory:" and not Path(path).is_file():
            return [Check("数据库", Status.fail, f"数据库文件 {path} 不存在",
                          "运行 qingfeng db upgrade 建库（qingfeng run 启动时也会自动建库）"),
                    Check("数据库迁移", Status.fail, "无法检查：数据库不存在", "运行 qingfeng db upgrade")]
    db = Database(s.database_url)
    try:
        state = await asyncio.wait_for(database_state(db), max(timeout, DB_TIMEOUT) + 1)
    except TimeoutError:
        state = {"database": "timeout", "migrations": "unknown"}
    finally:
        await db.dispose()
    where = "SQLite 文件" if s.is_sqlite else make_url(s.database_url).render_as_string(hide_password=True)
    if state["database"] != "ok":
        fix = ("检查文件权限与磁盘空间" if s.is_sqlite else
               "检查 PostgreSQL 是否运行、QINGFENG_DATABASE_URL 的主机、端口、用户名和密码")
        return [Check("数据库", Status.fail, f"无法连接 {where}（{state['database']}）", fix),
                Check("数据库迁移", Status.fail, "无法检查：数据库不可用", "先修复数据库连接")]
    checks = [Check("数据库", Status.ok, f"可以连接 {where}")]
    if state["migrations"] == "ok":
        checks.append(Check("数据库迁移", Status.ok, "已是最新结构"))
    elif state["migrations"].startswith("unknown"):
        checks.append(Check("数据库迁移", Status.fail, f"数据库由更新的版本迁移过（{state['migrations']}）",
                            "请升级本程序到与数据库一致的版本"))
    else:
        checks.append(Check("数据库迁移", Status.fail, f"数据库结构不是最新（{state['migrations']}）",
                            "运行 qingfeng db upgrade（qingfeng run 启动时也会自动升级）"))
    return checks


# --- fonts ----------------------------------------------------------------------------------------


def _default_font_candidates() -> Iterator[Path]:
    """The font the charts use first, then CJK-looking fonts matplotlib knows of, then all others."""
    from matplotlib import font_manager

    try:
        from bot.reports.charts import font_path

        yield Path(font_path())
    except Exception:  # charts not importable or its font missing: search on
        pass
    spec = importlib.util.find_spec("mplfonts")  # the locked wheel's Noto Sans CJK (not SimHei: not free)
    if spec and spec.origin:
        yield from sorted((Path(spec.origin).parent / "fonts").glob("Noto*CJK*"))
    known = [Path(f.fname) for f in font_manager.fontManager.ttflist]
    yield from (p for p in known if any(h in p.name.lower() for h in ("cjk", "han", "wqy", "noto", "droid")))
    yield from (Path(p) for p in font_manager.findSystemFonts())
    yield from known


def find_cjk_font(candidates: Iterable[Path] | None = None) -> tuple[Path, str] | None:
    """The first font (path, family) in which matplotlib's FreeType finds every sample glyph."""
    from matplotlib import font_manager

    for path in (_default_font_candidates() if candidates is None else candidates):
        try:
            font = font_manager.get_font(str(path))
        except Exception:  # unreadable or not a font
            continue
        glyphs = [font.get_char_index(ord(c)) for c in CJK_SAMPLE]
        # Distinct glyphs, not merely mapped ones: "last resort" fonts map a whole block to one box.
        if all(glyphs) and len(set(glyphs)) == len(set(CJK_SAMPLE)):
            return path, font.family_name
    return None


def check_fonts(candidates: Iterable[Path] | None = None) -> Check:
    found = find_cjk_font(candidates)
    if found is None:
        return Check("中文字体", Status.fail, "matplotlib 找不到含中文字形的字体，报告图表中的中文会显示为方框",
                     "按锁定的依赖安装（uv sync 会装上 mplfonts 中的 Noto Sans CJK），或 apt install fonts-noto-cjk")
    path, family = found
    return Check("中文字体", Status.ok, f"{family}（{path}）")


# --- channels -------------------------------------------------------------------------------------


WECHAT_HINTS = {
    40001: ("AppSecret 错误", "核对 QINGFENG_WECHAT_SECRET（公众号后台「基本配置」可重置 AppSecret）"),
    40125: ("AppSecret 无效", "核对 QINGFENG_WECHAT_SECRET"),
    40013: ("AppID 不合法", "核对 QINGFENG_WECHAT_APPID"),
    40164: ("服务器 IP 不在 IP 白名单中", "在「设置与开发 → 基本配置 → IP白名单」加入本机出口 IP"),
    61004: ("服务器 IP 不在 IP 白名单中", "在「设置与开发 → 基本配置 → IP白名单」加入本机出口 IP"),
    40243: ("AppSecret 已被冻结", "在公众号后台解冻或重置 AppSecret"),
    -1: ("微信系统繁忙", "稍后重试"),
}
WECOM_HINTS = {
    40013: ("CorpID 不合法", "核对 QINGFENG_WECOM_CORPID（「我的企业 → 企业信息」最下方）"),
    40001: ("Secret 不合法", "核对 QINGFENG_WECOM_SECRET（「应用管理 → 应用 → Secret」）"),
    40091: ("Secret 不合法", "核对 QINGFENG_WECOM_SECRET（「应用管理 → 应用 → Secret」）"),
    40056: ("AgentId 不合法", "核对 QINGFENG_WECOM_AGENTID"),
    301002: ("Secret 与 AgentId 不属于同一应用", "核对 QINGFENG_WECOM_AGENTID 与 QINGFENG_WECOM_SECRET"),
    60020: ("服务器 IP 不是企业可信 IP", "在应用详情页「企业可信IP」中加入本机出口 IP"),
    -1: ("企业微信系统繁忙", "稍后重试"),
}


def _unreachable(name: str, base: str, exc: Exception, fix: str) -> Check:
    kind = "超时" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    return Check(name, Status.fail, f"无法连接 {base}（{kind}）", fix)


def _errcode_check(name: str, body: dict[str, Any], hints: dict[int, tuple[str, str]], key: str) -> Check:
    code = int(body.get("errcode", -99))
    what, fix = hints.get(code, (f"平台返回错误 {code}", f"查阅平台全局错误码 {code}；核对 {key} 等配置"))
    return Check(name, Status.fail, f"{what}（errcode {code}）", fix)


async def check_telegram(s: Settings, client: httpx.AsyncClient) -> list[Check]:
    name = "Telegram"
    base = _root(s.telegram_base_url, TELEGRAM_DEFAULT, "/bot")
    token = s.telegram_token.get_secret_value()  # type: ignore[union-attr]
    fix_net = ("检查网络与代理；服务器无法直连 api.telegram.org 时，可自建 Bot API 服务器并设置 "
               "QINGFENG_TELEGRAM_BASE_URL")
    try:
        resp = await client.get(f"{base}/bot{token}/getMe")
    except httpx.HTTPError as exc:
        return [_unreachable(name, base, exc, fix_net)]
    if resp.status_code in (401, 404):
        return [Check(name, Status.fail, f"Telegram 拒绝了令牌（HTTP {resp.status_code}）",
                      "在 @BotFather 中用 /mybots → API Token 核对或重新生成，填入 QINGFENG_TELEGRAM_TOKEN")]
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or not body.get("ok"):
        return [Check(name, Status.fail, f"getMe 失败（HTTP {resp.status_code}）", fix_net)]
    checks = [Check(name, Status.ok, f"令牌有效：@{body['result'].get('username', '?')}（{base}）")]
    if s.telegram_webhook_url:
        checks.append(await _telegram_webhook(s, client, base, token))
    return checks


async def _telegram_webhook(s: Settings, client: httpx.AsyncClient, base: str, token: str) -> Check:
    name = "Telegram webhook"
    try:
        resp = await client.get(f"{base}/bot{token}/getWebhookInfo")
        info = resp.json().get("result") or {}
    except (httpx.HTTPError, ValueError, AttributeError):
        return Check(name, Status.warn, "无法读取 webhook 状态", "稍后重试 qingfeng doctor")
    registered = info.get("url") or ""
    if registered != s.telegram_webhook_url:
        return Check(name, Status.warn, f"Telegram 登记的地址是「{registered or '无'}」，与配置不同",
                     "qingfeng run 启动时会重新登记；若仍不同，检查是否有另一个进程在用同一个机器人")
    if info.get("last_error_message"):
        return Check(name, Status.warn, f"Telegram 最近一次推送失败：{info['last_error_message']}",
                     "确认反向代理把 /telegram/webhook 转发到本服务，且证书有效")
    return Check(name, Status.ok, f"已登记 {registered}，待处理更新 {info.get('pending_update_count', 0)} 条")


async def check_wechat(s: Settings, client: httpx.AsyncClient) -> list[Check]:
    name = "公众号"
    if s.wechat_secret is None:
        return []  # reported by check_settings
    base = _root(s.wechat_api_base_url, WECHAT_DEFAULT, "/cgi-bin")
    params = {"grant_type": "client_credential", "appid": s.wechat_appid,
              "secret": s.wechat_secret.get_secret_value()}
    try:
        body = (await client.get(f"{base}/cgi-bin/token", params=params)).json()
    except (httpx.HTTPError, ValueError) as exc:
        return [_unreachable(name, base, exc, "检查网络；或核对 QINGFENG_WECHAT_API_BASE_URL")]
    if not body.get("access_token"):
        return [_errcode_check(name, body, WECHAT_HINTS, "QINGFENG_WECHAT_APPID / QINGFENG_WECHAT_SECRET")]
    # Note: a new token replaces the one the running service holds (after WeChat's 5-minute
    # grace); the service refreshes it by itself on the next rejected call.
    checks = [Check(name, Status.ok, f"AppID 与 AppSecret 有效（{base}）")]
    if s.wechat_template_id:
        checks.append(await _wechat_template(s, client, base, body["access_token"]))
    return checks


async def _wechat_template(s: Settings, client: httpx.AsyncClient, base: str, token: str) -> Check:
    name = "公众号模板消息"
    try:
        body = (await client.get(f"{base}/cgi-bin/template/get_all_private_template",
                                 params={"access_token": token})).json()
    except (httpx.HTTPError, ValueError):
        return Check(name, Status.warn, "无法读取模板列表", "稍后重试 qingfeng doctor")
    if "template_list" not in body:
        code = body.get("errcode", "?")
        return Check(name, Status.warn, f"无法读取模板列表（errcode {code}）", "确认公众号已开通模板消息功能")
    ids = {t.get("template_id") for t in body["template_list"]}
    if s.wechat_template_id not in ids:
        return Check(name, Status.fail, f"模板 {s.wechat_template_id} 不在本公众号的模板列表中",
                     "在「广告与服务 → 模板消息 → 我的模板」复制模板 ID，填入 QINGFENG_WECHAT_TEMPLATE_ID")
    return Check(name, Status.ok, f"模板 {s.wechat_template_id} 可用")


async def check_wecom(s: Settings, client: httpx.AsyncClient) -> list[Check]:
    name = "企业微信"
    if s.wecom_secret is None:
        return []  # reported by check_settings
    base = _root(s.wecom_api_base_url, WECOM_DEFAULT, "/cgi-bin")
    params = {"corpid": s.wecom_corpid, "corpsecret": s.wecom_secret.get_secret_value()}
    try:
        body = (await client.get(f"{base}/cgi-bin/gettoken", params=params)).json()
    except (httpx.HTTPError, ValueError) as exc:
        return [_unreachable(name, base, exc, "检查网络；或核对 QINGFENG_WECOM_API_BASE_URL")]
    if body.get("errcode", 0) != 0 or not body.get("access_token"):
        return [_errcode_check(name, body, WECOM_HINTS, "QINGFENG_WECOM_CORPID / QINGFENG_WECOM_SECRET")]
    if s.wecom_agentid is None:
        return [Check(name, Status.ok, f"CorpID 与 Secret 有效（{base}）")]
    # agent/get checks the AgentId and, for apps created after mid-2022, the trusted-IP list.
    try:
        agent = (await client.get(f"{base}/cgi-bin/agent/get",
                                  params={"access_token": body["access_token"], "agentid": s.wecom_agentid})).json()
    except (httpx.HTTPError, ValueError) as exc:
        return [_unreachable(name, base, exc, "检查网络；或核对 QINGFENG_WECOM_API_BASE_URL")]
    if agent.get("errcode", 0) != 0:
        return [_errcode_check(name, agent, WECOM_HINTS, "QINGFENG_WECOM_AGENTID")]
    return [Check(name, Status.ok, f"凭据有效，应用「{agent.get('name', s.wecom_agentid)}」可调用（{base}）")]


async def check_channels(s: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[Check]:
    async with httpx.AsyncClient(timeout=timeout, trust_env=True) as client:
        tasks = []
        if s.telegram_token:
            tasks.append(check_telegram(s, client))
        if s.wechat_appid:
            tasks.append(check_wechat(s, client))
        if s.wecom_corpid:
            tasks.append(check_wecom(s, client))
        results = await asyncio.gather(*tasks)
    return [c for group in results for c in group]


# --- all of it ------------------------------------------------------------------------------------


async def run_checks(s: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                     font_candidates: Iterable[Path] | None = None) -> list[Check]:
    checks = check_settings(s)
    checks.append(await asyncio.to_thread(check_bank, s))
    checks += await check_database(s, timeout=timeout)
    checks.append(await asyncio.to_thread(check_fonts, font_candidates))
    checks += await check_channels(s, timeout=timeout)
    secrets = _secrets(s)
    return [Check(c.name, c.status, _scrub(c.detail, secrets), _scrub(c.fix, secrets)) for c in checks]


def _width(text: str) -> int:
    """Terminal columns: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


MARKS = {Status.ok: "✓", Status.warn: "!", Status.fail: "✗"}


def render(checks: Sequence[Check]) -> str:
    width = max((_width(c.name) for c in checks), default=4)
    lines = []
    for c in checks:
        pad = " " * (width - _width(c.name))
        lines.append(f"{MARKS[c.status]} {c.name} {pad} {c.detail}")
        if c.fix and c.status is not Status.ok:
            lines.append(f"  {' ' * width}  → {c.fix}")
    fails = sum(c.status is Status.fail for c in checks)
    warns = sum(c.status is Status.warn for c in checks)
    if fails:
        lines.append(f"\n{fails} 项需要修复，{warns} 项提醒。")
    elif warns:
        lines.append(f"\n可以运行；{warns} 项提醒。")
    else:
        lines.append("\n一切正常。")
    return "\n".join(lines)
