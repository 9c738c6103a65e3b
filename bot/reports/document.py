"""The report as a document in the seeds' style: headings 一、二、…, sentences, numbered 图表 and 表.

`build_document` turns a `FullReport` into blocks once; the docx, html and text writers in
`export` only lay the blocks out, so the three formats always say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from bot.core.results import ItemStat
from bot.reports import charts
from bot.reports.analysis import stars, wilson
from bot.reports.model import CorrelationTable, FullReport
from bot.reports.wording import (
    TEST_CAVEAT,
    band_sentence,
    ci_text,
    comparison_sentence,
    pct,
    quote_stem,
    r3,
    trend_sentence,
    withheld_text,
)
from bot.reports.wording import short as _short

CHINESE_NUMERALS = "一二三四五六七八九十"
TYPE_NAMES = {"single": "单选", "multiple": "多选", "judge": "判断"}
MAX_ITEM_FIGURES = 12  # up to this many items, one chart each; beyond, GRID_ITEMS to a chart
GRID_ITEMS = 8


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Figure:
    number: int
    caption: str
    png: bytes


@dataclass(frozen=True)
class Table:
    label: str  # 表1 / 表5.1
    caption: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


Block = Heading | Para | Figure | Table


@dataclass
class Document:
    title: str
    subtitle: str
    blocks: list[Block] = field(default_factory=list)


class _Counter:
    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0

    def figure(self) -> int:
        self.figures += 1
        return self.figures

    def table(self) -> int:
        self.tables += 1
        return self.tables


def build_document(report: FullReport, tz: ZoneInfo, *, with_charts: bool = True) -> Document:
    """The whole report as blocks. `with_charts=False` skips rendering PNGs (text output)."""
    doc = Document(
        title=f"{report.org_path or report.org_name}廉政学习答题情况报告",
        subtitle=f"统计期间：{report.period_text or report.period_label}"
        + (f"　生成时间：{report.generated_at.astimezone(tz):%Y年%m月%d日 %H:%M}" if report.generated_at else ""),
    )
    n = _Counter()
    sections: list[Callable[[], list[Block]]] = [lambda: _response(report, n)]
    if not report.withheld:
        sections += [
            lambda: _accuracy(report, n, with_charts),
            lambda: _topics_and_trend(report, n, with_charts),
            lambda: _units(report, n, with_charts),
            lambda: _attributes(report, n),
            lambda: _item_analysis(report, n),
        ]
    sections.append(lambda: _notes(report))
    index = 0
    for section in sections:
        blocks = section()
        if not blocks:
            continue
        head, *rest = blocks
        assert isinstance(head, Heading)
        doc.blocks.append(Heading(f"{CHINESE_NUMERALS[index]}、{head.text}"))
        doc.blocks += rest
        index += 1
    if report.nonresponders is not None:
        doc.blocks += _nonresponders(report, n)
    return doc


# --- sections (each returns [Heading, …] or []) ----------------------------------------------------


def _response(r: FullReport, n: _Counter) -> list[Block]:
    blocks: list[Block] = [Heading("作答情况")]
    if not r.pushed:
        return [*blocks, Para("本期没有向该组织推送学习题。")]
    if r.withheld:  # the push count is about deliveries, not people's answers; nothing else is shown
        blocks.append(Para(f"本期共向{r.org_name}（含下级组织）推送学习题{r.pushed}人次。作答人数少于{r.min_group}人，"
                           "为保护个人信息，本期不显示回收率、正确率等统计结果。"))
        return blocks
    text = (f"本期共向{r.org_name}（含下级组织）推送学习题{r.pushed}人次，回收{r.returned}人次，"
            f"回收率{pct(r.return_rate, 2)}；其中按时作答的有效{r.responded}人次，有效比例{pct(r.valid_rate, 2)}。")
    text += f"共有{r.people}名党员作答，形成有效回答{r.valid_answers}份。"
    excluded = []
    if r.late_answers:
        excluded.append(f"截止后作答{r.late_answers}份")
    if r.retired_answers:
        excluded.append(f"已停用题目的作答{r.retired_answers}份")
    if excluded:
        text += "另有" + "、".join(excluded) + "，未计入统计。"
    blocks.append(Para(text))
    blocks.append(Table(f"表{n.table()}", "作答情况",
                        ["推送人次", "回收人次", "回收率", "有效人次", "有效比例", "作答人数", "有效回答（份）",
                         "逾期（份）", "停用题（份）"],
                        [[str(r.pushed), str(r.returned), pct(r.return_rate, 2), str(r.responded),
                          pct(r.valid_rate, 2), str(r.people), str(r.valid_answers), str(r.late_answers),
                          str(r.retired_answers)]],
                        note="回收：该轮至少作答一题（含逾期）；有效：该轮至少有一题在截止前作答。"))
    return blocks


def _accuracy(r: FullReport, n: _Counter, with_charts: bool) -> list[Block]:
    blocks: list[Block] = [Heading("答题正确情况")]
    blocks.append(Para(f"在{r.valid_answers}份有效回答中，正确答案比例为{pct(r.accuracy)}"
                       f"（95%置信区间{ci_text(r.ci)}）。" + trend_sentence(r.accuracy, r.previous, r.min_group)))
    shown = [i for i in r.items if not i.withheld and i.answered]
    if shown:
        weakest = "；".join(f"“{quote_stem(i.stem)}”（{pct(i.accuracy)}）" for i in shown[:3])
        blocks.append(Para(band_sentence(r.items) + f"正确率最低的问题是：{weakest}。"))
    rows = []
    ordered = sorted(r.items, key=lambda i: i.item_id)
    for k, item in enumerate(ordered, start=1):
        if item.withheld:
            rows.append([str(k), _short(item.stem, 60), TYPE_NAMES.get(item.type, ""), item.key,
                         withheld_text(r.min_group), "", "", ""])
            continue
        options = "；".join(f"{letter} {pct(c / item.answered)}" for letter, c in item.option_counts.items())
        rows.append([str(k), _short(item.stem, 60), TYPE_NAMES.get(item.type, ""), item.key,
                     str(item.answered), pct(item.accuracy), ci_text(_wilson(item)), options])
    table_no = n.table()
    blocks.append(Table(f"表{table_no}", "各题正确率",
                        ["序号", "题目", "题型", "正确答案", "有效回答", "正确率", "95%置信区间", "各选项选择比例"],
                        rows, note="多选题全部选对才算正确；各选项选择比例为选择该项的回答所占比例，"
                                   "多选题各项之和可超过100%。"))
    if with_charts and shown:
        by_id = sorted(shown, key=lambda i: i.item_id)
        if len(by_id) <= MAX_ITEM_FIGURES:  # one chart per item, as the seeds draw them
            for item in by_id:
                number = n.figure()
                blocks.append(Figure(number, _short(item.stem, 60), charts.item_options_png(item, number=number)))
        else:  # many items: several to a chart, numbered as in the table
            row_no = {item.item_id: k for k, item in enumerate(ordered, start=1)}
            for start in range(0, len(by_id), GRID_ITEMS):
                chunk = by_id[start:start + GRID_ITEMS]
                numbers = [row_no[i.item_id] for i in chunk]
                number = n.figure()
                label = f"（表{table_no}第{numbers[0]}–{numbers[-1]}题）"
                blocks.append(Figure(number, "各题选项分布" + label, charts.option_distribution_png(
                    r, number=number, items=chunk, subtitle=label, numbers=numbers)))
    return blocks


def _wilson(item: ItemStat) -> tuple[float, float] | None:
    return wilson(item.correct, item.answered)


def _topics_and_trend(r: FullReport, n: _Counter, with_charts: bool) -> list[Block]:
    if not r.topics and len(r.weeks) < 2:
        return []
    blocks: list[Block] = [Heading("各主题与分周情况")]
    shown = [t for t in r.topics if not t.withheld]
    if shown:
        weak = "、".join(f"{t.label}（{pct(t.accuracy)}）" for t in shown[:2])
        blocks.append(Para(f"按主题看，正确率较低的是{weak}，可作为下一阶段学习的重点。"))
        if with_charts:
            number = n.figure()
            blocks.append(Figure(number, "各主题正确率", charts.topic_accuracy_png(r, number=number)))
        blocks.append(Table(f"表{n.table()}", "各主题正确率", ["主题", "作答人数", "有效回答", "正确率", "95%置信区间"],
                            [[t.label, withheld_text(r.min_group), "", "", ""] if t.withheld else
                             [t.label, str(t.people), str(t.answers), pct(t.accuracy), ci_text(t.ci)]
                             for t in r.topics],
                            note="一道题可属于多个主题，各主题的回答数之和可能超过总数。"))
    if len(r.weeks) >= 2:
        first = next((w for w in r.weeks if w.accuracy is not None), None)
        last = next((w for w in reversed(r.weeks) if w.accuracy is not None), None)
        if first and last and first is not last:
            blocks.append(Para(f"分周看，正确率由{first.week.month}月{first.week.day}日当周的{pct(first.accuracy)}"
                               f"变为{last.week.month}月{last.week.day}日当周的{pct(last.accuracy)}。"))
        if with_charts:
            number = n.figure()
            blocks.append(Figure(number, "分周正确率与回收率", charts.weekly_trend_png(r, number=number)))
        blocks.append(Table(f"表{n.table()}", "分周情况",
                            ["周（周一）", "轮数", "推送人次", "有效人次", "回收率", "有效回答", "正确率"],
                            [[f"{w.week:%Y-%m-%d}", str(w.rounds), withheld_text(r.min_group), "", "", "", ""]
                             if w.withheld else
                             [f"{w.week:%Y-%m-%d}", str(w.rounds), str(w.pushed), str(w.responded),
                              pct(w.response_rate), str(w.answers), pct(w.accuracy)] for w in r.weeks]))
    return blocks


def _units(r: FullReport, n: _Counter, with_charts: bool) -> list[Block]:
    blocks: list[Block] = []
    if r.units and any(not u.direct for u in r.units.units):
        c = r.units
        blocks.append(Heading("下级组织对比"))
        ranked = sorted((u for u in c.units if u.rank is not None), key=lambda u: u.rank or 0)
        if ranked:
            blocks.append(Para(f"{c.parent_name}所属{len(ranked)}个组织中，正确率最高的是{ranked[0].name}"
                               f"（{pct(ranked[0].accuracy)}），最低的是{ranked[-1].name}（{pct(ranked[-1].accuracy)}）。"))
        for sentence in (comparison_sentence(c.members_test, per="按人计"),
                         comparison_sentence(c.answers_test, per="按回答计")):
            if sentence:
                blocks.append(Para(sentence))
        if c.members_test or c.answers_test:
            blocks.append(Para(TEST_CAVEAT))
        if with_charts and len(ranked) > 1:
            number = n.figure()
            blocks.append(Figure(number, "下级组织正确率对比", charts.branch_comparison_png(r, number=number)))
        blocks.append(Table(f"表{n.table()}", "下级组织对比",
                            ["名次", "组织", "推送人次", "有效人次", "回收率", "作答人数", "有效回答", "正确率",
                             "95%置信区间"],
                            [["", u.name, withheld_text(r.min_group), "", "", "", "", "", ""] if u.withheld else
                             [str(u.rank or ""), u.name, str(u.pushed), str(u.responded), pct(u.response_rate),
                              str(u.people), str(u.answers), pct(u.accuracy), ci_text(u.ci)] for u in c.units],
                            note="名次按正确率排列，并列者名次相同；本级指直接隶属于本组织、不在下级组织中的党员。"))
    if r.sibling_rank:
        s = r.sibling_rank
        if not blocks:
            blocks.append(Heading("同级组织比较"))
        blocks.append(Para(f"在{s.parent_name}所属{s.of}个组织中，{r.org_name}本期正确率列第{s.position}位"
                           "（其他组织的具体数据不在本报告中列出）。"))
        for sentence in (comparison_sentence(s.members_test, per="同级组织按人计"),
                         comparison_sentence(s.answers_test, per="同级组织按回答计")):
            if sentence:
                blocks.append(Para(sentence))
        if s.members_test or s.answers_test:
            blocks.append(Para(TEST_CAVEAT))
    return blocks


def _attributes(r: FullReport, n: _Counter) -> list[Block]:
    if not r.attributes and not r.correlations:
        return []
    blocks: list[Block] = [Heading("按人员属性分析")]
    blocks.append(Para("以下按成员名册中登记的属性（当前登记值）分组统计正确率。各组人数少于"
                       f"{r.min_group}人时不显示数字。分组差异只反映相伴关系，不说明因果。"))
    for table in r.attributes:
        blocks.append(Table(f"表{n.table()}", f"按{table.title}分组的正确率",
                            [table.title, "作答人数", "有效回答", "正确率", "95%置信区间"],
                            [[s.label, withheld_text(r.min_group), "", "", ""] if s.withheld else
                             [s.label, str(s.people), str(s.answers), pct(s.accuracy), ci_text(s.ci)]
                             for s in table.rows],
                            note="一人可有多个标签。" if table.key == "tag" else ""))
    for corr in r.correlations:
        number = n.table()
        blocks.append(Para(corr.sentence))
        if corr.result is not None and not corr.withheld:
            blocks.append(_seed_correlation_table(f"表{number}.1", corr, "Pearson 相关性"))
            blocks.append(_seed_correlation_table(f"表{number}.2", corr, "Spearman 等级相关"))
    return blocks


def _seed_correlation_table(label: str, c: CorrelationTable, kind: str) -> Table:
    """The seed's 表2.1 layout, both variables against each other."""
    res = c.result
    assert res is not None
    r, p = (res.pearson_r, res.pearson_p) if kind.startswith("Pearson") else (res.spearman_rho, res.spearman_p)
    coef = r3(r) + stars(p)
    p_text = "<.001" if p < 0.001 else r3(p)
    rows = [
        [c.x_label, kind, "1", coef],
        ["", "显著性（双侧）", "", p_text],
        ["", "N", str(c.n_x), str(res.n)],
        [c.y_label, kind, coef, "1"],
        ["", "显著性（双侧）", p_text, ""],
        ["", "N", str(res.n), str(c.n_y)],
    ]
    note = "**. 在 .01 水平（双侧）上显著相关。" if stars(p) == "**" else \
        "*. 在 .05 水平（双侧）上显著相关。" if stars(p) else "未达到 .05 显著性水平。"
    return Table(label, f"{c.x_label}与{c.y_label}的相关性（{kind}）", ["", "", c.x_label, c.y_label], rows,
                 note=note + f"{c.x_label}的N为本期被推送且登记了{c.x_label}的人数，{c.y_label}的N为有有效回答的人数。")


def _item_analysis(r: FullReport, n: _Counter) -> list[Block]:
    if not r.rounds:
        return []
    blocks: list[Block] = [Heading("题目质量分析（供题库维护参考）")]
    blocks.append(Para(
        "按Moodle测验统计的方法，只用每轮全部题目均按时作答者的首次作答计算：难度系数为答对比例；区分度指数为该题得分"
        "与其余各题总分的相关系数×100；区分效率为该协方差占可能最大协方差的百分比；α为Cronbach内部一致性系数。"
        "难度系数≤5%或≥95%、区分效率低于15%、区分度为负的题目予以提示，建议题库维护人员复核题干与选项。"))
    for rnd in r.rounds:
        caption = f"{rnd.title}（{rnd.opens_at:%Y-%m-%d}开启）题目分析"
        if rnd.stats is None:
            blocks.append(Para(f"{caption}：{rnd.note}"))
            continue
        st = rnd.stats
        alpha = f"α = {st.alpha:.2f}" if st.alpha is not None else "α不计算"
        note = f"完整作答{st.respondents}人，{alpha}。" + (rnd.note or "")
        rows = [[_short(rnd.stems.get(a.item_id, a.item_id), 40), a.item_id, f"{a.facility:.1f}%", f"{a.sd:.2f}",
                 "—" if a.discrimination is None else f"{a.discrimination:.1f}",
                 "—" if a.efficiency is None else f"{a.efficiency:.1f}%", "、".join(a.flags)]
                for a in st.items]
        blocks.append(Table(f"表{n.table()}", caption,
                            ["题目", "题号", "难度系数", "标准差", "区分度指数", "区分效率", "提示"], rows, note=note))
    return blocks


def _notes(r: FullReport) -> list[Block]:
    return [
        Heading("说明"),
        Para("1. 统计对象为统计期间内开启的各轮学习中，该组织及其下级组织党员的作答；每人每题只计首次作答，"
             "截止后的作答和已停用题目的作答不计入。"),
        Para("2. 正确率的95%置信区间按Wilson方法计算。"),
        Para(f"3. 为保护个人信息，描述少于{r.min_group}人的统计格一律不显示；支部报告中不出现党员姓名。"),
        Para("4. 每张表均可由数据库中一条SQL查询复现，查询文本见 docs/reports-sql.md。"),
    ]


def _nonresponders(r: FullReport, n: _Counter) -> list[Block]:
    rows = [[name, org, str(missed)] for name, org, missed in r.nonresponders or []]
    if not rows:
        return [Heading("附：未作答名单"), Para("本期被推送的党员均已按时作答。")]
    return [Heading("附：未作答名单"),
            Para("本名单由组织开启“未作答名单”功能后提供，仅供支部书记提醒督促，请勿外传。"),
            Table(f"表{n.table()}", "本期未按时作答的党员", ["姓名", "组织", "未作答轮数"], rows)]
