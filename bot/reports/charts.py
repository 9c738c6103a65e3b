"""Report charts as PNG bytes (matplotlib, Agg), with Chinese labels on a fresh machine.

Font: Noto Sans CJK SC Regular 1.004 (SIL Open Font License 1.1), the copy bundled in the
`mplfonts` wheel pinned by uv.lock, checked by SHA-256 and registered with matplotlib's
font manager from that file — no network, no system font needed. (The same wheel also ships
SimHei, which is not freely licensed: it is never used.) Debian's `fonts-noto-cjk` is the
fallback when the wheel's file is absent.

Every chart is titled 图表N like the seeds; the caller numbers them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
from matplotlib.ticker import PercentFormatter

from bot.core.results import BranchSummary, ItemStat
from bot.reports.model import FullReport

FONT_FILE = "NotoSansCJKsc-Regular.otf"
FONT_SHA256 = "1652500938055a232cfbfa321de6ebaadfc5635dd9f75e369bc991d14a6512dd"
FONT_FAMILY = "Noto Sans CJK SC"
LETTERS = "ABCDEFGH"

# Colours: the key in a deep red that prints well in grey too; other options in grey.
KEY_COLOUR = "#b22222"
OTHER_COLOUR = "#9e9e9e"
LINE_COLOUR = "#1f4e79"
SECOND_COLOUR = "#c27c0e"
DPI = 150

_render_lock = threading.Lock()  # rcParams are process-global; one chart at a time


class FontMissing(RuntimeError):
    """No CJK font: refuse rather than draw boxes."""


@lru_cache(maxsize=1)
def font_path() -> Path:
    """The pinned Noto Sans CJK SC file, registered with matplotlib (once per process)."""
    spec = importlib.util.find_spec("mplfonts")  # locate the wheel without importing it
    candidates: list[Path] = []
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "fonts" / FONT_FILE)
    candidates += [Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
                   Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc")]
    for path in candidates:
        if not path.is_file():
            continue
        if path.name == FONT_FILE and _sha256(path) != FONT_SHA256:
            raise FontMissing(f"{path} is not the pinned Noto Sans CJK SC file (SHA-256 differs)")
        font_manager.fontManager.addfont(str(path))
        return path
    raise FontMissing("no Noto Sans CJK SC font found: install the locked dependencies (mplfonts) "
                      "or Debian's fonts-noto-cjk")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rc() -> dict[str, object]:
    font_path()
    return {
        "font.family": "sans-serif",
        "font.sans-serif": [FONT_FAMILY, "DejaVu Sans"],
        "axes.unicode_minus": False,  # the CJK font has no U+2212
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 10,
    }


def _png(draw) -> bytes:  # type: ignore[no-untyped-def]
    with _render_lock, matplotlib.rc_context(_rc()):
        fig = draw()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


_NO_LINE_START = set("）)」』》〉】〕”’。，、；：！？,.;:!?%…　")  # kinsoku: never first on a line
_NO_LINE_END = set("（(「『《〈【〔“‘")  # … and never last


def _cell_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _wrap(text: str, width: int, lines: int) -> str:
    """Wrap by display width (a Chinese character counts 2, `width` is in Chinese characters),
    keeping punctuation off the wrong line ends; at most `lines` lines, the last ending '…'."""
    chars = list(re.sub(r"（\s*）", "（　）", " ".join(text.split())))
    out: list[str] = []
    start = 0
    while start < len(chars):
        end, used = start, 0
        while end < len(chars) and used + _cell_width(chars[end]) <= 2 * width:
            used += _cell_width(chars[end])
            end += 1
        if end < len(chars):
            cut = end  # move the break back over at most three characters to respect kinsoku
            def bad(k: int) -> bool:
                return chars[k] in _NO_LINE_START or chars[k - 1] in _NO_LINE_END

            while cut > start + 1 and end - cut < 3 and bad(cut):
                cut -= 1
            if not bad(cut):
                end = cut
        out.append("".join(chars[start:end]).strip())
        start = end
        while start < len(chars) and chars[start] == " ":
            start += 1
    if len(out) > lines:
        out = [*out[: lines - 1], out[lines - 1][:-1] + "…"]
    return "\n".join(out)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def chart_available(summary: BranchSummary) -> bool:
    """Whether `option_distribution_png` has anything to draw (not withheld, some item shown)."""
    return not summary.withheld and any(not i.withheld and i.answered for i in summary.items)


# --- option distribution ------------------------------------------------------------------------


def _option_shares(item: ItemStat) -> list[tuple[str, float, bool]]:
    """(letter, share of the item's answers choosing it, is part of the key) for every option."""
    n_options = len(item.options) or (max((LETTERS.index(c) for c in item.option_counts), default=-1) + 1)
    out = []
    for letter in LETTERS[:n_options]:
        count = item.option_counts.get(letter, 0)
        out.append((letter, count / item.answered if item.answered else 0.0, letter in item.key))
    return out


def _draw_options(ax, item: ItemStat, *, label_texts: bool) -> None:  # type: ignore[no-untyped-def]
    shares = _option_shares(item)
    xs = range(len(shares))
    colours = [KEY_COLOUR if key else OTHER_COLOUR for _l, _s, key in shares]
    bars = ax.bar(xs, [s for _l, s, _k in shares], color=colours, width=0.6)
    for bar, (_l, share, _k) in zip(bars, shares, strict=True):
        ax.annotate(_pct(share), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    if label_texts and item.type == "judge" and item.options:
        ticks = list(item.options)
    else:
        ticks = [letter for letter, _s, _k in shares]
    ax.set_xticks(list(xs), ticks)
    ax.set_ylim(0, 1.18)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.tick_params(axis="y", labelsize=8)


def option_distribution_png(summary: BranchSummary, *, number: int = 1, max_items: int = 8,
                            items: Sequence[ItemStat] | None = None, subtitle: str = "",
                            numbers: Sequence[int] | None = None) -> bytes:
    """Several items in one image (by default the summary's weakest `max_items`): each item's
    option shares, the key in red. This is the /report photo."""
    if items is None:
        items = [i for i in summary.items if not i.withheld and i.answered][:max_items]
    items = list(items)

    def draw() -> Figure:
        if not items:
            fig = Figure(figsize=(6, 2))
            fig.text(0.5, 0.5, "本期没有可显示的题目统计", ha="center", va="center", fontsize=12)
            return fig
        cols = 2 if len(items) > 1 else 1
        rows = (len(items) + cols - 1) // cols
        fig = Figure(figsize=(5.2 * cols, 2.9 * rows + 0.9), layout="constrained")
        fig.suptitle(f"图表{number}  各题选项分布{subtitle}（{summary.org_name}·{summary.period_label}，"
                     "红色为正确答案）", fontsize=12)
        axes = fig.subplots(rows, cols, squeeze=False)
        for k, item in enumerate(items):
            ax = axes[k // cols][k % cols]
            _draw_options(ax, item, label_texts=True)
            no = numbers[k] if numbers else k + 1
            ax.set_title(f"{no}. {_wrap(item.stem, 26, 2)}\n正确率{_pct(item.accuracy or 0)}，N={item.answered}",
                         fontsize=9, loc="left")
        for k in range(len(items), rows * cols):
            axes[k // cols][k % cols].set_visible(False)
        return fig

    return _png(draw)


def item_options_png(item: ItemStat, *, number: int) -> bytes:
    """One item, as the seeds draw it: title 图表N and the stem, bars per option, option texts
    as a note under the chart."""

    def draw() -> Figure:
        notes = [_wrap(f"{letter}. {text}", 40, 2)
                 for letter, text in zip(LETTERS, item.options, strict=False)] if item.type != "judge" else []
        note = "注：\n" + "\n".join(notes) if notes else ""
        note_lines = note.count("\n") + 1 if note else 0
        fig = Figure(figsize=(6.4, 3.6 + 0.22 * note_lines), layout="constrained")
        fig.suptitle(f"图表{number}  {_wrap(item.stem, 30, 3)}", fontsize=11)
        ax = fig.subplots()
        _draw_options(ax, item, label_texts=True)
        ax.set_ylabel("选择比例")
        ax.set_xlabel(f"正确答案 {item.key}（红色）　正确率 {_pct(item.accuracy or 0)}　N = {item.answered}",
                      fontsize=9)
        if note:
            fig.supxlabel(note, fontsize=8, x=0.02, ha="left")
        return fig

    return _png(draw)


# --- topics, weeks, units ------------------------------------------------------------------------


def _hbar_with_ci(ax, labels: Sequence[str], values: Sequence[float | None],  # type: ignore[no-untyped-def]
                  cis: Sequence[tuple[float, float] | None], ns: Sequence[int], withheld_text: str) -> None:
    ys = list(range(len(labels)))[::-1]  # first row at the top
    for y, value, ci, n in zip(ys, values, cis, ns, strict=True):
        if value is None:
            ax.text(0.01, y, withheld_text, va="center", fontsize=8, color="#555555")
            continue
        ax.barh(y, value, color=LINE_COLOUR, height=0.6)
        if ci:
            ax.errorbar(value, y, xerr=[[value - ci[0]], [ci[1] - value]], fmt="none", ecolor="#333333",
                        capsize=3, linewidth=1)
        ax.text(min((ci[1] if ci else value) + 0.015, 1.015), y, f"{_pct(value)}（N={n}）", va="center", fontsize=8)
    ax.set_yticks(ys, [_wrap(label, 16, 2) for label in labels])
    ax.set_xlim(0, 1.22)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def topic_accuracy_png(report: FullReport, *, number: int) -> bytes:
    topics = report.topics

    def draw() -> Figure:
        fig = Figure(figsize=(8, 1.2 + 0.42 * max(len(topics), 1)), layout="constrained")
        fig.suptitle(f"图表{number}  各主题正确率（{report.org_name}·{report.period_label}）", fontsize=12)
        ax = fig.subplots()
        _hbar_with_ci(ax, [t.label for t in topics], [t.accuracy for t in topics], [t.ci for t in topics],
                      [t.answers for t in topics], f"少于{report.min_group}人，不予显示")
        for x in (0.8, 0.9):
            ax.axvline(x, color="#bbbbbb", linestyle="--", linewidth=0.8, zorder=0)
        ax.set_xlabel("正确率（横线为95%置信区间；虚线为80%、90%）")
        return fig

    return _png(draw)


def weekly_trend_png(report: FullReport, *, number: int) -> bytes:
    weeks = report.weeks

    def draw() -> Figure:
        fig = Figure(figsize=(8, 3.8), layout="constrained")
        fig.suptitle(f"图表{number}  分周正确率与回收率（{report.org_name}）", fontsize=12)
        ax = fig.subplots()
        xs = list(range(len(weeks)))
        # A withheld week is a gap in the lines (NaN), not a point joined across.
        acc = [w.accuracy if w.accuracy is not None else float("nan") for w in weeks]
        rate = [w.response_rate if w.response_rate is not None else float("nan") for w in weeks]
        ax.plot(xs, acc, marker="o", color=LINE_COLOUR, label="正确率", zorder=3)
        ax.plot(xs, rate, marker="s", color=SECOND_COLOUR, linestyle="--", label="回收率", zorder=2)
        for x, a, r in zip(xs, acc, rate, strict=True):
            if a == a:  # not NaN
                # Next to its own point, on the side away from the 回收率 line: a label above both
                # points read as the 回收率 whenever accuracy was the lower of the two.
                below = r == r and r > a
                ax.annotate(_pct(a), (x, a), xytext=(0, -14 if below else 9), textcoords="offset points",
                            ha="center", va="top" if below else "baseline", fontsize=8, color=LINE_COLOUR, zorder=4,
                            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
        ax.set_xticks(xs, [f"{w.week.month}月{w.week.day}日周" + ("\n（不予显示）" if w.withheld else "")
                           for w in weeks])
        ax.set_ylim(0, 1.12)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.legend(loc="lower left", frameon=False)
        ax.grid(axis="y", color="#eeeeee")
        return fig

    return _png(draw)


def branch_comparison_png(report: FullReport, *, number: int) -> bytes:
    units = [u for u in report.units.units if not u.direct] if report.units else []

    def draw() -> Figure:
        fig = Figure(figsize=(8, 1.3 + 0.45 * max(len(units), 1)), layout="constrained")
        fig.suptitle(f"图表{number}  下级组织正确率对比（{report.org_name}·{report.period_label}）", fontsize=12)
        ax = fig.subplots()
        _hbar_with_ci(ax, [u.name for u in units], [u.accuracy for u in units], [u.ci for u in units],
                      [u.answers for u in units], f"少于{report.min_group}人或无作答，不予显示")
        if report.accuracy is not None:
            ax.axvline(report.accuracy, color=KEY_COLOUR, linestyle="--", linewidth=1, zorder=0)
            ax.text(report.accuracy, 1.0, f"总体 {_pct(report.accuracy)}", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color=KEY_COLOUR)
        ax.set_xlabel("正确率（横线为95%置信区间）")
        return fig

    return _png(draw)


def chat_chart_plan(summary: BranchSummary) -> list[tuple[str, Callable[[], bytes]]]:
    """The images a /report reply or weekly digest carries, not yet drawn: (caption, draw).
    Numbered 图表1… in this order: options, topics, weeks, units. Each draws on its own, so a
    caller can skip one that fails and still send the rest."""
    if not chart_available(summary):
        return []
    plan: list[tuple[str, Callable[[], bytes]]] = [
        ("各题选项分布", lambda: option_distribution_png(summary, number=1))]
    if isinstance(summary, FullReport):
        report = summary
        # One bar or one week says no more than the text; two or more compare.
        if sum(1 for t in report.topics if not t.withheld) > 1:
            n = len(plan) + 1
            plan.append(("各主题正确率", lambda: topic_accuracy_png(report, number=n)))
        if len(report.weeks) > 1:
            k = len(plan) + 1
            plan.append(("分周趋势", lambda: weekly_trend_png(report, number=k)))
        if report.units and sum(1 for u in report.units.units if not u.direct) > 1:
            m = len(plan) + 1
            plan.append(("下级组织对比", lambda: branch_comparison_png(report, number=m)))
    return plan


def chat_charts(summary: BranchSummary) -> list[tuple[str, bytes]]:
    """The images a /report reply carries, drawn: (caption, png). The option chart first."""
    return [(caption, draw()) for caption, draw in chat_chart_plan(summary)]
