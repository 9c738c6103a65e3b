"""Every report table's SQL, written once: the code runs these texts and docs/reports-sql.md prints them.

The queries are plain SQL that runs on SQLite and PostgreSQL alike, with three
dialect-specific fragments (the single-round filter, the local week, the tag expansion)
filled in by `render`. `python -m bot.reports.queries > docs/reports-sql.md` regenerates
the documentation; a test keeps the two identical.

Parameters (named, `:name`):
  :scope     materialised path of the scope organisation plus '%', e.g. '/1/4/%'
  :start     period start, UTC, inclusive   :end   period end, UTC, exclusive
  :round_id  only when the period is one round
  :scope_id  id of the scope organisation (unit breakdowns)
  :tz        PostgreSQL: time-zone name, e.g. 'Asia/Shanghai'
  :tz_shift  SQLite: the zone's UTC offset as a date modifier, e.g. '+480 minutes'
  :year      the report's year (for 党龄 bands)   :max_rounds  rounds given an item analysis
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.reports import tally

# Members of the scope and rounds of the period; every query starts from these two id lists.
_BASE = """scope_members AS (
    SELECT m.id AS member_id, m.org_id
    FROM member m JOIN organization o ON o.id = m.org_id
    WHERE o.path LIKE :scope
),
period_rounds AS (
    SELECT r.id AS round_id, r.opens_at
    FROM round r
    WHERE r.opens_at >= :start AND r.opens_at < :end{round_filter}
)"""

# The answers that count ("valid": on time, to items that are not retired) of the scope's
# members in the period's rounds, read from the answer table by the two id lists: a branch's
# month reads only its own rows through the (member_id, round_id, item_id) unique index.
# Only the per-item tables need answers one by one.
_VALID = """valid AS (
    SELECT a.member_id, a.round_id, a.item_id, a.choice, a.correct
    FROM answer a
    WHERE a.round_id IN (SELECT round_id FROM period_rounds)
      AND a.member_id IN (SELECT member_id FROM scope_members)
      AND NOT a.late
      AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
)"""

# Per member and round, from the answer tally (one row per member-round with a stored answer,
# kept with every answer: bot/reports/tally.py, defined below). The tally counts on-time
# answers whatever the item's status, so on-time answers to items retired since are looked
# up (a few rows, by the (round_id, item_id) index) and taken off. answers / correct are then
# the valid answers; a row with answers = 0 had only late or retired answers.
_MEMBER_ROUNDS = """retired AS (
    SELECT a.member_id, a.round_id, COUNT(*) AS answers,
           SUM(CASE WHEN a.correct THEN 1 ELSE 0 END) AS correct
    FROM answer a
    WHERE a.round_id IN (SELECT round_id FROM period_rounds)
      AND a.item_id IN (SELECT id FROM bankitem WHERE status = 'retired')
      AND a.member_id IN (SELECT member_id FROM scope_members)
      AND NOT a.late
    GROUP BY a.member_id, a.round_id
),
member_rounds AS (
    SELECT t.member_id, t.round_id,
           t.on_time - COALESCE(x.answers, 0) AS answers,
           t.on_time_correct - COALESCE(x.correct, 0) AS correct,
           t.late, COALESCE(x.answers, 0) AS retired
    FROM answertally t
    LEFT JOIN retired x ON x.member_id = t.member_id AND x.round_id = t.round_id
    WHERE t.round_id IN (SELECT round_id FROM period_rounds)
      AND t.member_id IN (SELECT member_id FROM scope_members)
)"""

# Deliveries (one per member and round) to members of the scope in the period's rounds.
_PUSHED = """pushed AS (
    SELECT d.round_id, d.member_id
    FROM delivery d
    WHERE d.round_id IN (SELECT round_id FROM period_rounds)
      AND d.member_id IN (SELECT member_id FROM scope_members)
)"""

_CORRECT = "SUM(CASE WHEN correct THEN 1 ELSE 0 END)"

# Valid answers totalled per member (members with at least one).
_SCORES = """scores AS (
    SELECT member_id, SUM(answers) AS answers, SUM(correct) AS correct
    FROM member_rounds WHERE answers > 0 GROUP BY member_id
)"""

# The scope's child organisations (each with its subtree) and the scope itself (its direct
# members only), so every member falls into exactly one unit; organisations are matched to
# units once, members to organisations by id.
_UNITS = """units AS (
    SELECT c.id AS unit_id, c.name AS unit_name, c.path || '%' AS pattern
    FROM organization c WHERE c.parent_id = :scope_id
    UNION ALL
    SELECT o.id, o.name, o.path FROM organization o WHERE o.id = :scope_id
),
org_unit AS (
    SELECT o.id AS org_id, u.unit_id
    FROM organization o JOIN units u ON o.path LIKE u.pattern
    WHERE o.path LIKE :scope
),
member_unit AS (
    SELECT sm.member_id, ou.unit_id FROM scope_members sm JOIN org_unit ou ON ou.org_id = sm.org_id
)"""


@dataclass(frozen=True)
class Query:
    name: str
    title: str  # the report table it feeds, as named in the document
    notes: str
    template: str


def _with(*ctes: str) -> str:
    return "WITH " + ",\n".join(ctes) + "\n"


SUMMARY = Query(
    "summary", "作答情况与总体正确率",
    "One row. members = active members in the scope now; pushed = deliveries; returned = "
    "member-rounds with any answer (回收); responded = member-rounds with a valid answer (有效); "
    "people = distinct members with a valid answer; late and retired answers are counted apart "
    "and excluded from valid_answers.",
    _with(_BASE, _PUSHED, _MEMBER_ROUNDS) + """SELECT
    (SELECT COUNT(*) FROM member m JOIN organization o ON o.id = m.org_id
     WHERE o.path LIKE :scope AND m.active) AS members,
    (SELECT COUNT(*) FROM pushed) AS pushed,
    COUNT(*) AS returned,
    COALESCE(SUM(CASE WHEN answers > 0 THEN 1 ELSE 0 END), 0) AS responded,
    COUNT(DISTINCT CASE WHEN answers > 0 THEN member_id END) AS people,
    COALESCE(SUM(answers), 0) AS valid_answers,
    COALESCE(SUM(correct), 0) AS correct_answers,
    COALESCE(SUM(late), 0) AS late_answers,
    COALESCE(SUM(retired), 0) AS retired_answers
FROM member_rounds""",
)

ITEMS = Query(
    "items", "各题正确率",
    "One row per item answered. people = distinct members (the privacy floor applies to it).",
    _with(_BASE, _VALID)
    + """SELECT n.item_id, bi.stem, bi.type, bi.answer AS answer_key, n.answers, n.correct, n.people
FROM (
    SELECT item_id, COUNT(*) AS answers, """ + _CORRECT + """ AS correct,
           COUNT(DISTINCT member_id) AS people
    FROM valid GROUP BY item_id
) n
JOIN bankitem bi ON bi.id = n.item_id
ORDER BY n.item_id""",
)

OPTIONS = Query(
    "options", "各题选项分布（图表）",
    "One row per item and exact choice ('ACD' for a multiple-choice answer). The charts count "
    "a multiple-choice answer towards each letter it contains.",
    _with(_BASE, _VALID) + """SELECT item_id, choice, COUNT(*) AS answers
FROM valid
GROUP BY item_id, choice
ORDER BY item_id, choice""",
)

TOPICS = Query(
    "topics", "各主题正确率",
    "One row per topic; an item with two topics counts in both.",
    _with(_BASE, _VALID) + """SELECT it.topic, COUNT(DISTINCT v.item_id) AS items, COUNT(*) AS answers,
       SUM(CASE WHEN v.correct THEN 1 ELSE 0 END) AS correct,
       COUNT(DISTINCT v.member_id) AS people
FROM valid v JOIN itemtopic it ON it.item_id = v.item_id
GROUP BY it.topic
ORDER BY it.topic""",
)

WEEKS = Query(
    "weeks", "分周趋势",
    "One row per local calendar week (Monday) in which rounds reached the scope. pushed_people = "
    "distinct members pushed that week.",
    _with(_BASE, _PUSHED, _MEMBER_ROUNDS) + """, round_weeks AS (
    SELECT round_id, {week} AS week FROM period_rounds
),
pushed_by_week AS (
    SELECT rw.week, COUNT(DISTINCT p.round_id) AS rounds, COUNT(*) AS pushed,
           COUNT(DISTINCT p.member_id) AS pushed_people
    FROM pushed p JOIN round_weeks rw ON rw.round_id = p.round_id GROUP BY rw.week
),
answers_by_week AS (
    SELECT rw.week, COUNT(*) AS responded, SUM(mr.answers) AS answers, SUM(mr.correct) AS correct,
           COUNT(DISTINCT mr.member_id) AS people
    FROM member_rounds mr JOIN round_weeks rw ON rw.round_id = mr.round_id
    WHERE mr.answers > 0 GROUP BY rw.week
)
SELECT p.week, p.rounds, p.pushed, COALESCE(a.responded, 0) AS responded,
       COALESCE(a.answers, 0) AS answers, COALESCE(a.correct, 0) AS correct,
       COALESCE(a.people, 0) AS people, p.pushed_people
FROM pushed_by_week p
LEFT JOIN answers_by_week a ON a.week = p.week
ORDER BY p.week""",
)

UNITS = Query(
    "units", "下级组织对比",
    "One row per child organisation (its whole subtree) plus one for members attached directly "
    "to the scope organisation. For a branch's rank among its siblings, run it with the parent "
    "as the scope.",
    _with(_BASE, _PUSHED, _UNITS, _MEMBER_ROUNDS) + """, unit_pushed AS (
    SELECT mu.unit_id, COUNT(*) AS pushed, COUNT(DISTINCT p.member_id) AS pushed_people
    FROM pushed p JOIN member_unit mu ON mu.member_id = p.member_id GROUP BY mu.unit_id
),
unit_answers AS (
    SELECT mu.unit_id, COUNT(*) AS responded, SUM(mr.answers) AS answers, SUM(mr.correct) AS correct,
           COUNT(DISTINCT mr.member_id) AS people
    FROM member_rounds mr JOIN member_unit mu ON mu.member_id = mr.member_id
    WHERE mr.answers > 0 GROUP BY mu.unit_id
)
SELECT u.unit_id, u.unit_name, COALESCE(p.pushed, 0) AS pushed,
       COALESCE(a.responded, 0) AS responded, COALESCE(a.answers, 0) AS answers,
       COALESCE(a.correct, 0) AS correct, COALESCE(a.people, 0) AS people,
       COALESCE(p.pushed_people, 0) AS pushed_people
FROM units u
LEFT JOIN unit_pushed p ON p.unit_id = u.unit_id
LEFT JOIN unit_answers a ON a.unit_id = u.unit_id
ORDER BY u.unit_id""",
)

MEMBER_SCORES = Query(
    "member_scores", "（统计检验的输入，不在报告中列出）",
    "One row per member pushed in the period: their unit, 行政级别 ordinal, 入党年份 and valid "
    "answers. The per-member test across units and the correlations run on these vectors; no "
    "member row is ever shown.",
    _with(_BASE, _PUSHED, _UNITS, _MEMBER_ROUNDS, _SCORES)
    + """SELECT p.member_id, mu.unit_id, m.rank_level, m.joined_party_year,
       COALESCE(s.answers, 0) AS answers, COALESCE(s.correct, 0) AS correct
FROM (SELECT member_id FROM scope_members WHERE member_id IN (SELECT member_id FROM pushed)) p
JOIN member m ON m.id = p.member_id
LEFT JOIN member_unit mu ON mu.member_id = p.member_id
LEFT JOIN scores s ON s.member_id = p.member_id
ORDER BY p.member_id""",
)

BY_ATTRIBUTE = Query(
    "by_attribute", "按人员属性（行政级别、职务、党龄、人群标签）",
    "One row per attribute and group, over the members with a valid answer (people = members, "
    "answers and correct their totals). attribute 'rank': grp = member.rank_level (ordinal); "
    "'position': member.position as recorded; 'party_age': 党龄 band from 入党年份 (1 = under 5 "
    "years, 2 = 5–9, 3 = 10–19, 4 = 20–29, 5 = 30 and more); 'tag': each cohort tag in "
    "member.tags (a member with two tags counts in both; members without tags are not in it). "
    "NULL = not recorded.",
    _with(_BASE, _MEMBER_ROUNDS, _SCORES) + """, scored AS (
    SELECT s.answers, s.correct, m.rank_level, m.position, m.tags,
           CASE WHEN m.joined_party_year IS NULL THEN NULL
                WHEN :year - m.joined_party_year < 5 THEN 1
                WHEN :year - m.joined_party_year < 10 THEN 2
                WHEN :year - m.joined_party_year < 20 THEN 3
                WHEN :year - m.joined_party_year < 30 THEN 4
                ELSE 5 END AS party_age
    FROM scores s JOIN member m ON m.id = s.member_id
)
SELECT 'rank' AS attribute, CAST(rank_level AS TEXT) AS grp, COUNT(*) AS people,
       SUM(answers) AS answers, SUM(correct) AS correct
FROM scored GROUP BY rank_level
UNION ALL
SELECT 'position', position, COUNT(*), SUM(answers), SUM(correct)
FROM scored GROUP BY position
UNION ALL
SELECT 'party_age', CAST(party_age AS TEXT), COUNT(*), SUM(answers), SUM(correct)
FROM scored GROUP BY party_age
UNION ALL
SELECT 'tag', t.value, COUNT(*), SUM(s.answers), SUM(s.correct)
FROM scored s {tags_join}
GROUP BY t.value
ORDER BY 1, 2""",
)

# The rounds of the period that reached the scope (a delivery to one of its members).
_REACHED = """reached AS (
    SELECT pr.round_id, pr.opens_at FROM period_rounds pr
    WHERE EXISTS (SELECT 1 FROM delivery d
                  WHERE d.round_id = pr.round_id AND d.member_id IN (SELECT member_id FROM scope_members))
)"""

ROUNDS = Query(
    "rounds", "题目质量分析：轮次",
    "The latest :max_rounds rounds of the period that reached the scope (older ones are in older "
    "reports), oldest first: current (not retired) items and members pushed.",
    _with(_BASE, _REACHED) + """, analysed AS (
    SELECT round_id FROM reached ORDER BY opens_at DESC, round_id DESC LIMIT :max_rounds
)
SELECT r.id AS round_id, r.title, r.opens_at,
       (SELECT COUNT(*) FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
        WHERE ri.round_id = r.id AND bi.status <> 'retired') AS items,
       (SELECT COUNT(*) FROM delivery d
        WHERE d.round_id = r.id AND d.member_id IN (SELECT member_id FROM scope_members)) AS pushed
FROM round r
WHERE r.id IN (SELECT round_id FROM analysed)
ORDER BY r.opens_at, r.id""",
)

ROUND_MARKS = Query(
    "round_marks", "题目质量分析：作答矩阵（按题汇总）",
    "The item analysis' input for the rounds of `rounds`, summed so that no member row leaves "
    "the database: per round, item, first-attempt mark (1/0) and the member's total mark in the "
    "round, how many members. Only members who answered every current item of the round on "
    "time count (Moodle's finished attempts). Every item-analysis figure (facility, SD, "
    "discrimination, efficiency, Cronbach's α) is a function of these counts: an item's marks "
    "and rest-of-test scores are the pairs (mark, total − mark), each repeated members times.",
    _with(_BASE, _REACHED, _MEMBER_ROUNDS) + """, analysed AS (
    SELECT round_id FROM reached ORDER BY opens_at DESC, round_id DESC LIMIT :max_rounds
),
round_size AS (
    SELECT ri.round_id, COUNT(*) AS items
    FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
    WHERE ri.round_id IN (SELECT round_id FROM analysed) AND bi.status <> 'retired'
    GROUP BY ri.round_id
),
complete AS (
    SELECT mr.member_id, mr.round_id, mr.correct AS total
    FROM member_rounds mr JOIN round_size rs ON rs.round_id = mr.round_id
    WHERE mr.answers = rs.items
)
SELECT a.round_id, a.item_id, CASE WHEN a.correct THEN 1 ELSE 0 END AS mark, c.total, COUNT(*) AS members
FROM answer a JOIN complete c ON c.member_id = a.member_id AND c.round_id = a.round_id
WHERE a.round_id IN (SELECT round_id FROM analysed)
  AND NOT a.late
  AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
GROUP BY a.round_id, a.item_id, CASE WHEN a.correct THEN 1 ELSE 0 END, c.total
ORDER BY a.round_id, a.item_id, mark, c.total""",
)

NONRESPONDERS = Query(
    "nonresponders", "未作答名单（仅在组织开启后）",
    "Members pushed in the period and the rounds they left without a valid answer. Run only "
    "when the organisation (or an ancestor) has named_nonresponders switched on.",
    _with(_BASE, _PUSHED, _MEMBER_ROUNDS) + """SELECT m.id AS member_id, m.name, o.name AS org_name, COUNT(*) AS missed
FROM pushed p
JOIN member m ON m.id = p.member_id
JOIN organization o ON o.id = m.org_id
WHERE NOT EXISTS (SELECT 1 FROM member_rounds mr
                  WHERE mr.member_id = p.member_id AND mr.round_id = p.round_id AND mr.answers > 0)
GROUP BY m.id, m.name, o.name
ORDER BY o.name, m.name""",
)

ALL: tuple[Query, ...] = (SUMMARY, ITEMS, OPTIONS, TOPICS, WEEKS, UNITS, MEMBER_SCORES, BY_ATTRIBUTE, ROUNDS,
                          ROUND_MARKS, NONRESPONDERS)

_WEEK = {
    # Monday of the local week: SQLite has no named zones, so a fixed offset is bound.
    "sqlite": "date(opens_at, :tz_shift, '-6 days', 'weekday 1')",
    "postgresql": "CAST(date_trunc('week', opens_at AT TIME ZONE :tz) AS date)",
}
_TAGS = {
    "sqlite": "JOIN json_each(s.tags) t",
    "postgresql": "CROSS JOIN LATERAL json_array_elements_text(s.tags) AS t(value)",
}
_ROUND_FILTER = "\n      AND r.id = :round_id"


def render(query: Query, dialect: str, *, single_round: bool = False) -> str:
    dialect = "postgresql" if dialect.startswith("postgres") else "sqlite"
    return query.template.format(
        round_filter=_ROUND_FILTER if single_round else "",
        week=_WEEK[dialect], tags_join=_TAGS[dialect])


def markdown() -> str:
    """docs/reports-sql.md, generated from the texts above."""
    out = [
        "# Report SQL — one query per table",
        "",
        "Generated by `python -m bot.reports.queries > docs/reports-sql.md`; the report code runs",
        "exactly these texts (a test keeps this file in step). Every figure of a report is one of",
        "these rows; Python only reshapes them and runs scipy on them.",
        "",
        "How to reproduce a table by hand: bind the parameters and run the query in `sqlite3` or",
        "`psql`. Timestamps are UTC; on SQLite they are stored as text `YYYY-MM-DD HH:MM:SS.ffffff`,",
        "so bind `:start` / `:end` in that form (e.g. `2026-10-31 16:00:00.000000` for 1 November",
        "in Asia/Shanghai).",
        "",
        "| parameter | meaning |",
        "|---|---|",
        "| `:scope` | materialised path of the scope organisation plus `%`, e.g. `/1/4/%` |",
        "| `:start`, `:end` | the period: rounds that opened in [start, end), UTC |",
        "| `:round_id` | only for a one-round period: the line `AND r.id = :round_id` is added |",
        "| `:scope_id` | id of the scope organisation (unit breakdowns) |",
        "| `:tz` / `:tz_shift` | PostgreSQL zone name / SQLite offset such as `+480 minutes` |",
        "| `:year` | the year of the period's end, for 党龄 bands |",
        "| `:max_rounds` | how many of the period's latest rounds get an item analysis (12) |",
        "",
        "Definitions used by every query: an answer is *valid* when it was given before the round's",
        "deadline (`NOT late`) and its item is not retired; each (member, round, item) has one",
        "stored answer — the first — so all figures are first attempts. The privacy floor",
        "(`QINGFENG_REPORT_MIN_GROUP`, default 5) is applied afterwards to the `people` column:",
        "a row describing fewer people (respondents, or people pushed) is withheld, and when exactly",
        "one row of a breakdown that partitions the members is withheld, the next smallest is withheld",
        "too, so that it cannot be recovered by subtraction from the total — unless the withheld row",
        "holds no answers (then only the fact that its few members did not answer could be recovered).",
        "Per-member rows (`member_scores`) feed the statistics and are never shown.",
        "",
        "## The answer tally (`answertally`)",
        "",
        "Member-level figures (response, totals, units, attributes, member scores) are read from a",
        "small table with one row per member and round that has a stored answer, instead of from",
        "every answer. It is, at every commit, exactly this aggregate of the answers:",
        "",
        "```sql",
        tally.RECOUNT_SELECT + "\nGROUP BY member_id, round_id",
        "```",
        "",
        "The answer path adds each newly stored answer to its row in the same transaction",
        "(`bot.reports.tally.count_answer`; a replayed answer stores nothing and counts nothing);",
        "bulk loaders recount the rounds they wrote (`recount`); migration `0005_answer_tally`",
        "backfilled it. It does not depend on an item's status, so retiring an item later changes no",
        "stored row: the queries below subtract the on-time answers to retired items (CTE `retired`,",
        "read from the answers by the `(round_id, item_id)` index). To check it against the answers",
        "(no row means it is right):",
        "",
        "```sql",
        tally.MISMATCHES,
        "```",
        "",
    ]
    for q in ALL:
        out += [f"## `{q.name}` — {q.title}", "", q.notes, "", "```sql", render(q, "sqlite"), "```", ""]
        pg = render(q, "postgresql")
        if pg != render(q, "sqlite"):
            diff = [line for line in pg.splitlines() if line not in render(q, "sqlite").splitlines()]
            out += ["On PostgreSQL the dialect-specific line reads:", "", "```sql", *diff, "```", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation generator
    print(markdown(), end="")
