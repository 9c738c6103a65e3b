"""Charts, report files, the documented SQL and the `qingfeng report` command."""

from __future__ import annotations

import asyncio
import io
import os
import warnings
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import docx
import matplotlib
import pytest
from fontTools.ttLib import TTFont
from matplotlib.figure import Figure
from openpyxl import load_workbook
from typer.testing import CliRunner

from bot import cli
from bot.app import start_app
from bot.core.commands import ShowReport
from bot.reports import charts, queries
from bot.reports.charts import FONT_SHA256, chat_charts, font_path
from bot.reports.document import Figure as DocFigure
from bot.reports.document import Heading, build_document
from bot.reports.export import to_docx, to_html, to_text, to_xlsx, write_all
from bot.reports.model import FullReport
from bot.reports.period import Period
from bot.reports.report import full_report
from tests.conftest import make_settings
from tests.factories import build_org
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]
ITEMS = ["t-single-001", "t-single-002", "t-multiple-001", "t-judge-001", "t-judge-002"]
PNG = b"\x89PNG\r\n\x1a\n"


async def _two_week_report(app) -> FullReport:  # type: ignore[no-untyped-def]
    """A 党委 with two branches of 8, two weekly rounds, ranks and tags recorded."""
    root = await b.org(app, "机关党委")
    now = app.service.clock()
    for n, name in enumerate(("第一党支部", "第二党支部")):
        branch = await b.org(app, f"机关党委/{name}")
        await b.members(app, branch, 8, key=f"o{n}", attrs=lambda i: {
            "rank_level": 2 + i % 4, "position": "科员" if i % 2 else "科长", "joined_party_year": 1995 + 3 * i,
            "tags": ["年轻干部"] if i < 5 else []})
    for week in (1, 0):
        rnd = await b.open_round(app, root, ITEMS, at=now - timedelta(days=7 * week), title=f"第{2 - week}周学习")
        async with app.db.session() as s:
            from bot.core.orgs import subtree_members

            people = await subtree_members(s, root)
        await b.answers(app, rnd, [(m.id, item, (m.id + j + week) % 4 != 0)
                                   for m in people for j, item in enumerate(ITEMS)])
    period = Period(now - timedelta(days=8), now + timedelta(days=1), "近两周")
    async with app.db.session() as s:
        return await full_report(s, org=root, period=period, min_group=5, tz=TZ,
                                 topic_names=app.bank.vocabulary.topics, now=now)


# --- charts ------------------------------------------------------------------------------------


def test_the_pinned_cjk_font_is_open_licensed_and_registered():
    path = font_path()
    assert path.name == "NotoSansCJKsc-Regular.otf"
    assert charts._sha256(path) == FONT_SHA256
    names = TTFont(path, lazy=True)["name"]
    assert "SIL Open Font License" in names.getDebugName(13)
    cmap = TTFont(path, lazy=True).getBestCmap()
    assert all(ord(ch) in cmap for ch in "图表各题选项分布正确率回收率党支部（）：、，。—–")
    assert any(f.fname == str(path) for f in matplotlib.font_manager.fontManager.ttflist)


def test_missing_glyphs_would_be_caught():
    """The check the chart tests rely on: a Chinese label in a Latin-only font warns."""
    fig = Figure()
    fig.text(0.5, 0.5, "图表", family="DejaVu Sans")
    with pytest.warns(UserWarning, match="missing from font"):
        fig.savefig(io.BytesIO(), format="png")


async def test_report_over_chat_carries_the_option_and_topic_charts(sqlite_app):
    tree = await build_org(sqlite_app, per_branch=6, branches=1)
    rnd = await b.open_round(sqlite_app, tree.root, ITEMS[:3])
    await b.answers(sqlite_app, rnd, [(m.id, i, True) for m in tree.all_members() for i in ITEMS[:3]])
    result = (await sqlite_app.service.handle(tree.senders[tree.secretaries[0].id], ShowReport("")))[0]
    assert isinstance(result, FullReport) and charts.chart_available(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (tofu) fails the test
        sent = chat_charts(result)
    # Three items on three topics, one week, one branch: no trend, no unit comparison.
    assert [caption for caption, _ in sent] == ["各题选项分布", "各主题正确率"]
    assert all(png.startswith(PNG) for _, png in sent)


# --- files -------------------------------------------------------------------------------------


async def test_charts_workbook_document_html_and_text(sqlite_app, tmp_path):
    report = await _two_week_report(sqlite_app)
    assert report.units is not None and len(report.weeks) == 2 and report.topics
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (tofu) fails the test
        doc = build_document(report, TZ)
    figures = [blk for blk in doc.blocks if isinstance(blk, DocFigure)]
    # One chart per item (5), then topics, weeks and the branch comparison.
    assert len(figures) == 8 and all(f.png.startswith(PNG) and len(f.png) > 10_000 for f in figures)
    headings = [blk.text for blk in doc.blocks if isinstance(blk, Heading)]
    assert headings[:3] == ["一、作答情况", "二、答题正确情况", "三、各主题与分周情况"]
    assert [f.number for f in figures] == list(range(1, len(figures) + 1))

    wb = load_workbook(io.BytesIO(to_xlsx(report, TZ)))
    assert wb.sheetnames == ["概况", "各题", "主题", "分周", "下级组织", "属性分析", "相关分析", "题目分析"]
    summary = {row[0].value: row[1] for row in wb["概况"].iter_rows(min_row=2)}
    assert summary["有效回答（份）"].value == report.valid_answers
    assert summary["正确率"].value == pytest.approx(report.accuracy) and summary["正确率"].number_format == "0.0%"
    items = wb["各题"]
    header = [c.value for c in items[1]]
    first = {h: c for h, c in zip(header, items[2], strict=False)}
    assert isinstance(first["有效回答"].value, int) and first["正确率"].number_format == "0.0%"
    assert isinstance(first["正确率"].value, float)
    units = [[c.value for c in row] for row in wb["下级组织"].iter_rows(min_row=2)]
    assert sorted(u[1] for u in units) == ["第一党支部", "第二党支部"]

    d = docx.Document(io.BytesIO(to_docx(doc)))
    assert [p.text for p in d.paragraphs if p.style.name == "Heading 1"] == headings
    assert len(d.inline_shapes) == len(figures)
    assert any(p.text.startswith("表1  作答情况") for p in d.paragraphs)
    normal = d.styles["Normal"].element.rPr.rFonts
    assert normal.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}eastAsia") == "宋体"

    page = to_html(doc)
    HTMLParser().feed(page)
    assert page.count("data:image/png;base64,") == len(figures)
    assert '<html lang="zh-CN">' in page and "表1  作答情况" in page

    text = to_text(build_document(report, TZ, with_charts=False))
    assert f"在{report.valid_answers}份有效回答中，正确答案比例为" in text
    assert "表" in text and "Pearson 相关性" in text

    written = write_all(report, tmp_path, TZ)
    assert {p.name for p in written} >= {"report.xlsx", "report.docx", "report.html", "chart-01.png"}


def test_documented_sql_is_the_sql_that_runs():
    doc = (ROOT / "docs" / "reports-sql.md").read_text(encoding="utf-8")
    assert doc == queries.markdown(), "regenerate: python -m bot.reports.queries > docs/reports-sql.md"


# --- the command line -------------------------------------------------------------------------------


def test_report_command_writes_each_format(tmp_path, monkeypatch):
    """The real `qingfeng report` command (typer app, in-process to spare four interpreter starts)."""
    db = tmp_path / "q.db"
    url = f"sqlite+aiosqlite:///{db}"

    async def seed() -> None:
        a = await start_app(make_settings(url))
        try:
            tree = await build_org(a, per_branch=6, branches=2, bind=False)
            rnd = await b.open_round(a, tree.root, ITEMS)
            await b.answers(a, rnd, [(m.id, i, m.id % 3 != 0) for m in tree.all_members() for i in ITEMS])
        finally:
            await a.db.dispose()

    asyncio.run(seed())
    for key in [k for k in os.environ if k.startswith("QINGFENG_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    env = {"QINGFENG_DATABASE_URL": url, "QINGFENG_BANK_PATH": str(ROOT / "tests/fixtures/bank")}
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli.app, ["report", *args], env=env)

    text = run("--org", "机关党委", "--period", "本轮")
    assert text.exit_code == 0, text.output
    assert "一、作答情况" in text.stdout and "在70份有效回答中" in text.stdout
    for fmt in ("xlsx", "docx", "html"):
        res = run("--org", "第一支部", "--period", "全部", "--format", fmt, "--out", f"out/r.{fmt}")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "out" / f"r.{fmt}").stat().st_size > 1000
    load_workbook(tmp_path / "out" / "r.xlsx")
    docx.Document(str(tmp_path / "out" / "r.docx"))
    bad = run("--org", "第一支部", "--format", "pdf")
    assert bad.exit_code == 2 and "不支持的格式" in bad.stderr
    missing = run("--org", "第九支部")
    assert missing.exit_code == 1 and "没有找到组织「第九支部」" in missing.stderr
    period = run("--org", "第一支部", "--period", "明年")
    assert period.exit_code == 2 and "无法识别的期间「明年」" in period.stderr
