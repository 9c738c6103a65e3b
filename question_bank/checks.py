"""Bank quality checks beyond schema validity: give-aways, near-duplicates, coverage.

Structural problems are raised by the loader; these are judgements about a valid bank.
With `strict`, coverage shortfalls are errors (CI), otherwise warnings (while writing).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from question_bank.loader import Bank
from question_bank.schema import Item, ItemType, Status

NEAR_DUPLICATE = 0.85  # SequenceMatcher ratio of two stems
MIN_APPROVED_PER_TOPIC = 10
ALL_OF_ABOVE = re.compile(r"以上(都|全|均)(对|正确|不对|错误|是|不是)|以上(选项|说法)?(都|均|全)")
# The key being the longest option in at most this multiple of chance is acceptable.
LONGEST_KEY_TOLERANCE = 1.5


@dataclass
class QualityReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = list(self.lines)
        out += [f"警告：{w}" for w in self.warnings]
        out += [f"错误：{e}" for e in self.errors]
        out.append("题库检查未通过。" if self.errors else "题库检查通过。")
        return "\n".join(out)


def _where(bank: Bank, item_id: str) -> str:
    file, line = bank.origins.get(item_id, ("?", 0))
    return f"{file}:{line} [{item_id}]"


def near_duplicates(items: list[Item], threshold: float = NEAR_DUPLICATE) -> list[tuple[str, str, float]]:
    pairs = []
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            m = SequenceMatcher(None, a.stem, b.stem, autojunk=False)
            if m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold:
                ratio = m.ratio()
                if ratio >= threshold:
                    pairs.append((a.id, b.id, ratio))
    return pairs


def longest_key_rate(items: list[Item]) -> tuple[int, float, int]:
    """(times the key is the strictly longest option, expected by chance, single items counted)."""
    hits, expected, n = 0, 0.0, 0
    for item in items:
        if item.type is not ItemType.single:
            continue
        lengths = [len(o) for o in item.options]
        longest = max(lengths)
        if lengths.count(longest) > 1:
            continue
        n += 1
        expected += 1 / len(lengths)
        if lengths.index(longest) == "ABCDEFGH".index(item.answer):
            hits += 1
    return hits, expected, n


def quality_report(bank: Bank, *, strict: bool = False) -> QualityReport:
    report = QualityReport()
    items = list(bank.items.values())
    live = [i for i in items if i.status is not Status.retired]
    by_status = Counter(i.status.value for i in items)
    report.lines.append(
        f"题目 {len(items)} 道（approved {by_status['approved']}，draft {by_status['draft']}，"
        f"retired {by_status['retired']}）；案例 {len(bank.cases)} 个。")

    for a, b, ratio in near_duplicates(live):
        report.errors.append(f"题干高度相似（{ratio:.0%}）：{_where(bank, a)} 与 {_where(bank, b)}")

    for item in live:
        flagged = [o for o in item.options if ALL_OF_ABOVE.search(o)]
        if flagged:
            report.warnings.append(f"{_where(bank, item.id)} 含「以上都…」类选项：{flagged[0]}")

    hits, expected, n = longest_key_rate(live)
    if n:
        report.lines.append(f"单选题中正确项恰为最长选项：{hits}/{n}（随机期望约 {expected:.0f}）")
        if hits > LONGEST_KEY_TOLERANCE * expected + 2:
            report.errors.append(f"正确项为最长选项的比例过高（{hits}/{n}，期望约 {expected:.0f}）：这是明显的提示")

    approved_per_topic = Counter(t for i in items if i.status is Status.approved for t in i.topics[:1])
    for topic, name in bank.vocabulary.topics.items():
        if approved_per_topic[topic] < MIN_APPROVED_PER_TOPIC:
            have = approved_per_topic[topic]
            msg = f"主题「{name}」({topic}) 只有 {have} 道已审核题目（至少 {MIN_APPROVED_PER_TOPIC}）"
            (report.errors if strict else report.warnings).append(msg)

    used_categories = {c.category for c in bank.cases.values()}
    for category in sorted(bank.vocabulary.categories - used_categories):
        msg = f"案例类别「{category}」没有案例"
        (report.errors if strict else report.warnings).append(msg)

    report.lines.append(coverage_table(bank))
    return report


def coverage_table(bank: Bank) -> str:
    """Topic × type × difficulty counts of non-retired items (approved in brackets)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for item in bank.items.values():
        if item.status is Status.retired:
            continue
        topic = item.topics[0]
        for key in (item.type.value, f"d{item.difficulty}", "all"):
            counts[topic][key] += 1
            if item.status is Status.approved:
                counts[topic][key + "+"] += 1
        if item.scenario:
            counts[topic]["scenario"] += 1
    cols = ["single", "multiple", "judge", "d1", "d2", "d3"]
    header = f"{'主题':<24}{'合计(已审)':>12}" + "".join(f"{c:>10}" for c in cols) + f"{'情景题':>8}"
    rows = [header]
    for topic, name in bank.vocabulary.topics.items():
        c = counts[topic]
        label = f"{name[:10]}"
        rows.append(f"{label:<24}{c['all']:>7}({c['all+']:>3})" + "".join(f"{c[k]:>10}" for k in cols)
                    + f"{c['scenario']:>8}")
    return "\n".join(rows)
