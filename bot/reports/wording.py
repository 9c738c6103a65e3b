"""The sentences and number formats reports share (chat text, documents). No heavy imports."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.results import ItemStat

if TYPE_CHECKING:
    from bot.reports.analysis import TestResult
    from bot.reports.model import Previous


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x * 100:.{digits}f}%"


def ci_text(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"{ci[0] * 100:.1f}%–{ci[1] * 100:.1f}%"


def r3(x: float) -> str:
    """SPSS style: .350, -.086 (no leading zero)."""
    s = f"{x:.3f}"
    return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s


def fmt_p(p: float) -> str:
    return "< .001" if p < 0.001 else "= " + r3(p)


def withheld_text(min_group: int) -> str:
    return f"少于{min_group}人，不予显示"


def band_sentence(items: list[ItemStat]) -> str:
    """'9个问题的回答准确率均在80%以上，有6个问题在90%以上。' (seed 001)."""
    shown = [i for i in items if not i.withheld and i.answered]
    if not shown:
        return ""
    acc = [i.correct / i.answered for i in shown]
    n80, n90, n97 = (sum(1 for a in acc if a >= t) for t in (0.8, 0.9, 0.97))
    k = len(shown)
    head = f"{k}个问题的回答准确率均在80%以上" if n80 == k else f"{k}个问题中有{n80}个回答准确率在80%以上"
    tail = f"，有{n90}个问题在90%以上" if n90 else "，没有问题达到90%"
    if n97:
        tail += f"，有{n97}个问题在97%以上"
    hidden = sum(1 for i in items if i.withheld)
    extra = f"（另有{hidden}个问题作答人数过少，未列入）" if hidden else ""
    return head + tail + extra + "。"


def trend_sentence(accuracy: float | None, previous: Previous | None, min_group: int) -> str:
    """'与上期（…）的92.1%（1000份）相比，上升1.2个百分点。'"""
    if previous is None or accuracy is None:
        return ""
    if previous.withheld or previous.accuracy is None:
        return f"上期（{previous.label}）作答人数少于{min_group}人，不作比较。"
    delta = (accuracy - previous.accuracy) * 100
    move = "基本持平" if abs(delta) < 0.05 else f"{'上升' if delta > 0 else '下降'}{abs(delta):.1f}个百分点"
    return f"与上期（{previous.label}）的{pct(previous.accuracy)}（{previous.answers}份）相比，{move}。"


def comparison_sentence(t: TestResult | None, *, per: str) -> str:
    """One test in words, with its verdict."""
    if t is None:
        return ""
    symbol = "χ²" if "χ²" in t.method else "H"
    verdict = "差异有统计学意义" if t.p < 0.05 else "未发现有统计学意义的差异"
    return (f"{t.method}（{per}，{t.groups}组，N = {t.n}）：{symbol}({t.df}) = {t.statistic:.2f}，"
            f"p {fmt_p(t.p)}，{verdict}。")


TEST_CAVEAT = ("说明：按回答计的χ²检验把每一份回答当作独立观测，而同一人的多份回答并不独立，"
               "因此会高估差异的显著性，仅供参考；按人计的Kruskal-Wallis检验以每人的正确率为一个观测，"
               "更为稳妥。两者都只说明差异是否可能出于偶然，不说明差异的原因。")


def short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote_stem(stem: str, limit: int = 30) -> str:
    """A stem to quote in a sentence: the answer blank and final stop dropped, shortened."""
    text = re.sub(r"[（(]\s*[）)]", "", " ".join(stem.split())).rstrip("。.")
    return short(text, limit)
