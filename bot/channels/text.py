"""Plain-text rendering of core results (console, 公众号 and WeCom text replies)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from bot.core.results import (
    AnswerResult,
    BindResult,
    BranchSummary,
    CaseCard,
    HelpText,
    MemberRecord,
    Notice,
    QuizCard,
    Reminder,
    Result,
    RoundInvite,
)
from bot.reports.model import FullReport
from bot.reports.wording import band_sentence, ci_text, quote_stem, trend_sentence

TYPE_NAMES = {"single": "单选题", "multiple": "多选题", "judge": "判断题"}


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def render_card(card: QuizCard, tz: ZoneInfo, *, reply_hint: bool = True) -> str:
    head = "【温故知新】" if card.is_review else f"【第{card.position}/{card.total}题·{TYPE_NAMES.get(card.type, '')}】"
    lines = [head, card.stem, ""]
    lines += [f"{letter}. {text}" for letter, text in card.options]
    if reply_hint:
        lines.append("")
        if card.type == "multiple":
            lines.append("请回复全部正确选项的字母，如「AC」。")
        elif card.type == "judge":
            lines.append("请回复「对」或「错」（也可回复 A/B）。")
        else:
            letters = "/".join(letter for letter, _ in card.options)
            lines.append(f"请回复选项字母（{letters}）。")
    if not card.is_review:
        lines.append(f"截止时间：{card.deadline.astimezone(tz):%m月%d日 %H:%M}")
    return "\n".join(lines)


def render_case(case: CaseCard) -> str:
    kind = "（教学用综合案例）" if case.composite else ""
    return "\n".join([
        f"【警示教育】{case.title}{kind}",
        f"问题类别：{case.category}",
        f"基本情况：{case.what_happened}",
        f"违反规定：{case.rule_broken}",
        f"处理结果：{case.consequence}",
        f"警示：{case.lesson}",
        f"来源：{case.source}",
    ])


def render_answer(result: AnswerResult) -> str:
    if result.duplicate:
        head = f"这道题您已作答（以首次作答「{result.choice}」为准）。"
    elif result.correct:
        head = f"✅ 回答正确！您的答案：{result.choice}"
    else:
        head = f"❌ 回答错误。您的答案：{result.choice}，正确答案：{result.key}"
    lines = [head]
    if result.late:
        lines.append("（本轮已过截止时间，本次作答记录为逾期，不计入本轮统计。）")
    lines.append("正确答案：" + "；".join(f"{k}. {t}" for k, t in zip(result.key, result.key_text, strict=False)))
    lines.append(f"解析：{result.explanation}")
    lines.append(f"依据：{result.source}")
    if not result.correct and not result.duplicate and result.round_id is not None:
        lines.append("这道题会在几天后再次出现，帮助您巩固。")
    return "\n".join(lines)


def render_record(rec: MemberRecord) -> str:
    acc = rec.correct / rec.answered if rec.answered else None
    lines = [
        f"【{rec.name}的学习记录】{rec.org_name}",
        f"累计作答 {rec.answered} 题，答对 {rec.correct} 题，正确率 {pct(acc)}",
        f"参与 {rec.rounds_answered} 轮，连续参与 {rec.streak_weeks} 轮",
        f"本轮待答 {rec.pending_items} 题；待巩固（错题重练）{rec.due_reviews} 题",
    ]
    if rec.weakest_topics:
        weak = "、".join(f"{t.name}（{t.correct}/{t.answered}）" for t in rec.weakest_topics)
        lines.append(f"建议加强：{weak}")
    return "\n".join(lines)


def render_summary(s: BranchSummary) -> str:
    """The short /report reply (and weekly digest): response, share correct, weak spots."""
    lines = [f"【{s.org_name}·{s.period_label}答题统计】"]
    if s.withheld:
        lines.append(f"作答人数少于 {s.min_group} 人，为保护个人信息，本期统计不予显示。")
        lines.append(f"推送 {s.pushed} 人次。")
        return "\n".join(lines)
    if s.returned:
        lines.append(f"推送 {s.pushed} 人次，回收 {s.returned} 人次（回收率 {pct(s.return_rate)}），"
                     f"有效 {s.responded} 人次（有效比例 {pct(s.valid_rate)}）")
    else:
        lines.append(f"推送 {s.pushed} 人次，作答 {s.responded} 人次，回收率 {pct(s.response_rate)}")
    ci = f"（95%置信区间{ci_text(s.ci)}）" if s.ci else ""
    lines.append(f"在{s.valid_answers}份有效回答中，正确答案比例为{pct(s.accuracy)}{ci}。")
    full = s if isinstance(s, FullReport) else None
    if full and (trend := trend_sentence(full.accuracy, full.previous, full.min_group)):
        lines.append(trend)
    excluded = [f"逾期作答 {s.late_answers} 份"] if s.late_answers else []
    if s.retired_answers:
        excluded.append(f"已停用题目的作答 {s.retired_answers} 份")
    if excluded:
        lines.append(f"（另有{'、'.join(excluded)}，未计入统计。）")
    shown = [i for i in s.items if not i.withheld and i.answered]
    if shown:
        lines.append(band_sentence(s.items))
        lines.append("薄弱题目：")
        for stat in shown[:3]:
            lines.append(f"· {quote_stem(stat.stem, 40)}（{pct(stat.accuracy)}，N={stat.answered}）")
    if full:
        weak = [t for t in full.topics if not t.withheld][:2]
        if weak:
            lines.append("薄弱主题：" + "、".join(f"{t.label}（{pct(t.accuracy)}）" for t in weak))
        if full.units:
            ranked = sorted((u for u in full.units.units if u.rank is not None), key=lambda u: u.rank or 0)
            if ranked:
                lines.append("下级组织：" + "；".join(f"{u.rank}. {u.name} {pct(u.accuracy)}" for u in ranked[:5]))
        if full.sibling_rank:
            sr = full.sibling_rank
            lines.append(f"在{sr.parent_name}所属 {sr.of} 个组织中，本期正确率列第 {sr.position} 位。")
        if full.nonresponders:  # only present when the organisation switched the named list on
            names = "、".join(name for name, _org, _missed in full.nonresponders[:20])
            more = f"等 {len(full.nonresponders)} 人" if len(full.nonresponders) > 20 else ""
            lines.append(f"未按时作答：{names}{more}（名单已由组织开启，仅供提醒，请勿外传）")
    return "\n".join(lines)


def render_help(h: HelpText, *, slash: bool = True) -> str:
    c = (lambda s, w: f"/{s}") if slash else (lambda s, w: w)
    lines = ["【清风·廉政学习助手】"]
    if not h.bound:
        lines.append(f"首次使用请先绑定：发送「{c('start', '绑定')} 邀请码」（邀请码由支部书记提供）。")
    lines += [
        f"{c('quiz', '答题')} — 查看本周待答题目",
        "直接回复选项字母作答，如「A」、多选「AC」、判断「对/错」",
        f"{c('me', '我的')} — 我的学习记录",
        f"{c('case', '案例')} — 警示教育案例",
    ]
    if h.is_secretary:
        lines.append(f"{c('report', '报告')} [组织] [本周/上周/本月/上月/全部] — 本支部答题统计")
    lines.append(f"{c('help', '帮助')} — 显示本帮助")
    return "\n".join(lines)


def render_invite(invite: RoundInvite, tz: ZoneInfo, *, slash: bool = True) -> str:
    start = "/quiz" if slash else "答题"
    return (f"【{invite.title}】{invite.org_name}本周共 {len(invite.cards)} 道廉政学习题，"
            f"请于 {invite.deadline.astimezone(tz):%m月%d日 %H:%M} 前完成。发送「{start}」开始作答。")


def render_reminder(reminder: Reminder, tz: ZoneInfo, *, slash: bool = True) -> str:
    start = "/quiz" if slash else "答题"
    return (f"【督办提醒】{reminder.title}还有 {reminder.unanswered}/{reminder.total} 道题未作答，"
            f"将于 {reminder.deadline.astimezone(tz):%m月%d日 %H:%M} 截止。发送「{start}」继续作答。")


def render(result: Result, tz: ZoneInfo, *, slash: bool = True) -> str:
    if isinstance(result, QuizCard):
        return render_card(result, tz)
    if isinstance(result, AnswerResult):
        return render_answer(result)
    if isinstance(result, BindResult):
        if result.already_bound:
            return f"您已绑定为{result.org_name}的{result.member_name}。"
        start = "/quiz" if slash else "答题"
        return f"绑定成功！欢迎{result.org_name}的{result.member_name}同志。发送「{start}」开始本周学习。"
    if isinstance(result, MemberRecord):
        return render_record(result)
    if isinstance(result, BranchSummary):
        return render_summary(result)
    if isinstance(result, CaseCard):
        return render_case(result)
    if isinstance(result, HelpText):
        return render_help(result, slash=slash)
    if isinstance(result, Notice):
        return result.text
    if isinstance(result, RoundInvite):
        return render_invite(result, tz, slash=slash)
    if isinstance(result, Reminder):
        return render_reminder(result, tz, slash=slash)
    raise TypeError(f"cannot render {type(result).__name__}")


def render_all(results: list[Result], tz: ZoneInfo, *, slash: bool = True) -> list[str]:
    """Render each result; an answer's case and next card follow as their own messages."""
    out: list[str] = []
    for r in results:
        out.append(render(r, tz, slash=slash))
        if isinstance(r, AnswerResult):
            if r.case:
                out.append(render_case(r.case))
            if r.next_card:
                out.append(render_card(r.next_card, tz))
            elif not r.duplicate and r.round_id is not None:
                out.append("🎉 本轮题目已全部作答，感谢参与！")
    return out
