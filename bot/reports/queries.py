"""Every report table's SQL, written once: the code runs these texts and docs/reports-sql.md prints them.

A report first fills its *working set*: two temporary tables holding the scope's member-rounds
(pushed or answered, with their counts, from the answer tally) and, when the report needs
them, the scope's valid answers — or, when the scope holds every on-time answer of its rounds
(a 党委 over its tree), the item tally's counts of them. Every table of the report is then a small
query over these, so no query re-derives the scope's answers from the whole answer table. The queries are plain
SQL that runs on SQLite and PostgreSQL alike, with a few dialect-specific fragments (the
single-round filter, the local week, the tag expansion, the temporary schema) filled in by
`render`. `python -m bot.reports.queries > docs/reports-sql.md` regenerates the
documentation; a test keeps the two identical.

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

from dataclasses import dataclass, replace

from bot.reports import fold, tally

# Members of the scope (found by organisation, then by the member.org_id index) and rounds of
# the period: the two id lists the working set is cut from.
_BASE = """scope_members AS (
    SELECT m.id AS member_id, m.org_id
    FROM member m
    WHERE m.org_id IN (SELECT id FROM organization WHERE path LIKE :scope)
),
period_rounds AS (
    SELECT r.id AS round_id
    FROM round r
    WHERE r.opens_at >= :start AND r.opens_at < :end{round_filter}
)"""

# The scope's child organisations (each with its subtree) and the scope itself (its direct
# members only), so every member falls into exactly one unit.
_UNITS = """units AS (
    SELECT c.id AS unit_id, c.name AS unit_name, c.path || '%' AS pattern
    FROM organization c WHERE c.parent_id = :scope_id
    UNION ALL
    SELECT o.id, o.name, o.path FROM organization o WHERE o.id = :scope_id
)"""


@dataclass(frozen=True)
class Query:
    name: str
    title: str  # the report table it feeds, as named in the document
    notes: str
    template: str


@dataclass(frozen=True)
class WorkTable:
    """A temporary table of the working set: its columns and the statement that fills it."""

    name: str
    columns: str
    fill: Query
    # SQLite only: a clustered key, so that grouping by member reads the rows in order instead
    # of sorting them (PostgreSQL hashes; a key there would only slow the fill).
    sqlite_key: str = ""
    # The fill when the report uses the folded rounds (`fold.py`; a period of several rounds).
    folded_fill: Query | None = None

    def ddl(self, dialect: str) -> tuple[str, str]:
        schema = "pg_temp" if _dialect(dialect) == "postgresql" else "temp"
        if self.sqlite_key and _dialect(dialect) == "sqlite":
            return (f"DROP TABLE IF EXISTS {schema}.{self.name}",
                    f"CREATE TEMPORARY TABLE {self.name} (\n    {self.columns},\n"
                    f"    PRIMARY KEY ({self.sqlite_key})\n) WITHOUT ROWID")
        return (f"DROP TABLE IF EXISTS {schema}.{self.name}",
                f"CREATE TEMPORARY TABLE {self.name} (\n    {self.columns}\n)")


def _with(*ctes: str) -> str:
    return "WITH " + ",\n".join(ctes) + "\n"


# The scope's on-time answers to items retired since, per member and round: the answer tally
# counts them (it does not depend on item status), so readers of the tally take them off.
_RETIRED = """retired_items AS MATERIALIZED (
    SELECT ri.round_id, ri.item_id
    FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
    WHERE ri.round_id IN (SELECT round_id FROM period_rounds) AND bi.status = 'retired'
),
retired AS (
    SELECT a.member_id, a.round_id, COUNT(*) AS answers,
           SUM(CASE WHEN a.correct THEN 1 ELSE 0 END) AS correct
    FROM retired_items ri CROSS JOIN answer a
    WHERE a.round_id = ri.round_id AND a.item_id = ri.item_id
      AND a.member_id IN (SELECT member_id FROM scope_members)
      AND NOT a.late
    GROUP BY a.member_id, a.round_id
)"""

FOLDED = WorkTable(
    "report_folded",
    "round_id INTEGER NOT NULL",
    Query(
        "fill_folded", "工作集：已折叠的轮次",
        "Only when the report uses the folded rounds (`bot/reports/fold.py`: a period of several "
        "rounds, folds made with the links, retired items and members there are now): the rounds "
        "folded when the report starts. Every query below reads this list rather than "
        "`foldedround`, so that a round folded while the report runs is counted once, as not "
        "folded.",
        "INSERT INTO report_folded (round_id) SELECT round_id FROM foldedround",
    ),
    sqlite_key="round_id",
)

# The period's rounds that the working set reads from the tally when the report uses the folds.
_UNFOLDED_PERIOD = """period_rounds AS (
    SELECT r.id AS round_id
    FROM round r
    WHERE r.opens_at >= :start AND r.opens_at < :end{round_filter}
      AND r.id NOT IN (SELECT round_id FROM report_folded)
)"""

# Each member of the scope with their unit: the child organisation whose subtree holds them, or
# the scope itself. org_unit is MATERIALIZED so that units are matched once per organisation.
_MEMBER_UNIT = """org_unit AS MATERIALIZED (
    SELECT o.id AS org_id,
           COALESCE((SELECT c.id FROM organization c
                     WHERE c.parent_id = :scope_id AND o.path LIKE c.path || '%'), :scope_id) AS unit_id
    FROM organization o
    WHERE o.path LIKE :scope
),
member_unit AS (
    SELECT sm.member_id, ou.unit_id FROM scope_members sm JOIN org_unit ou ON ou.org_id = sm.org_id
)"""

MEMBER_ROUNDS = WorkTable(
    "report_member_round",
    "member_id INTEGER NOT NULL, round_id INTEGER NOT NULL, unit_id INTEGER NOT NULL,\n"
    "    pushed INTEGER NOT NULL, returned INTEGER NOT NULL, answers INTEGER NOT NULL,\n"
    "    correct INTEGER NOT NULL, late INTEGER NOT NULL, retired INTEGER NOT NULL",
    Query(
        "fill_member_rounds", "工作集：成员 × 轮次",
        "One row per member of the scope and round of the period that was pushed (a delivery) or "
        "answered: the answer tally's rows. unit_id = the child organisation whose subtree holds "
        "the member, or the scope itself; pushed = 1 with a delivery; returned = 1 with any "
        "stored answer (回收); answers / correct = valid answers (on time, item not retired) and "
        "how many were right; late = late answers; retired = on-time answers to items retired "
        "since. The tally counts on-time answers whatever the item's status, so on-time answers "
        "to the period's retired round items are looked up (by the answer (round_id, item_id) "
        "index: usually none) and taken off; CROSS JOIN keeps SQLite from reading every answer "
        "of the scope to find them (it joins in the order written; PostgreSQL plans as usual). "
        "org_unit is MATERIALIZED so that units are matched once per organisation, not once per "
        "member-round. The tally is read member by member (CROSS JOIN: by its (member_id, round_id) "
        "key; SQLite otherwise scanned the whole tally when the period has many rounds, half a "
        "million rows for a branch's 50 rounds).",
        _with(_BASE) + ", " + _MEMBER_UNIT + ",\n" + _RETIRED + """
INSERT INTO report_member_round (member_id, round_id, unit_id, pushed, returned, answers, correct, late, retired)
SELECT t.member_id, t.round_id, mu.unit_id, t.pushed,
       CASE WHEN t.on_time + t.late > 0 THEN 1 ELSE 0 END,
       t.on_time - COALESCE(x.answers, 0), t.on_time_correct - COALESCE(x.correct, 0),
       t.late, COALESCE(x.answers, 0)
FROM member_unit mu
CROSS JOIN answertally t
LEFT JOIN retired x ON x.member_id = t.member_id AND x.round_id = t.round_id
WHERE t.member_id = mu.member_id AND t.round_id IN (SELECT round_id FROM period_rounds)""",
    ),
    sqlite_key="member_id, round_id",
)
_PERIOD_ROUNDS_OF_BASE = _BASE[_BASE.index("period_rounds AS ("):]
assert MEMBER_ROUNDS.fill.template.count(_PERIOD_ROUNDS_OF_BASE) == 1
MEMBER_ROUNDS = replace(MEMBER_ROUNDS, folded_fill=Query(
    "fill_member_rounds_unfolded", "工作集：成员 × 未折叠的轮次",
    "As `fill_member_rounds`, for the period's rounds not in report_folded only (the open ones): "
    "the folded ones are summed from their folds.",
    MEMBER_ROUNDS.fill.template.replace(_PERIOD_ROUNDS_OF_BASE, _UNFOLDED_PERIOD),
))

# Member-rounds with a valid answer count as responded (有效).
_RESPONDED = "SUM(CASE WHEN answers > 0 THEN 1 ELSE 0 END)"

ROUND_TOTALS = WorkTable(
    "report_round",
    "round_id INTEGER NOT NULL, pushed INTEGER NOT NULL, returned INTEGER NOT NULL,\n"
    "    responded INTEGER NOT NULL, answers INTEGER NOT NULL, correct INTEGER NOT NULL,\n"
    "    late INTEGER NOT NULL, retired INTEGER NOT NULL",
    Query(
        "fill_round_totals", "工作集：各轮合计",
        "The member-rounds summed per round, once: responded = member-rounds with a valid answer. "
        "The summary's sums, the weeks, the rounds given an item analysis and `coverage` read "
        "these few rows instead of each grouping the member-rounds again (a 党委's 50 rounds are "
        "500,000 of them).",
        """INSERT INTO report_round (round_id, pushed, returned, responded, answers, correct, late, retired)
SELECT round_id, SUM(pushed), SUM(returned), """ + _RESPONDED + """, SUM(answers),
       SUM(correct), SUM(late), SUM(retired)
FROM report_member_round
GROUP BY round_id""",
    ),
    sqlite_key="round_id",
)

MEMBER_TOTALS = WorkTable(
    "report_member",
    "member_id INTEGER NOT NULL, unit_id INTEGER NOT NULL, pushed INTEGER NOT NULL,\n"
    "    responded INTEGER NOT NULL, answers INTEGER NOT NULL, correct INTEGER NOT NULL,\n"
    "    missed INTEGER NOT NULL",
    Query(
        "fill_member_totals", "工作集：成员合计",
        "The member-rounds summed per member, once (SQLite reads them in member order): rounds "
        "pushed, responded (with a valid answer) and missed (pushed, no valid answer), valid "
        "answers and how many were right; unit_id is the member's unit (one per member). The "
        "units, the member scores, the attribute breakdowns, the summary's people and the "
        "nonresponders read these rows instead of each grouping the member-rounds again.",
        """INSERT INTO report_member (member_id, unit_id, pushed, responded, answers, correct, missed)
SELECT member_id, MIN(unit_id), SUM(pushed), """ + _RESPONDED + """, SUM(answers), SUM(correct),
       SUM(CASE WHEN pushed = 1 AND answers = 0 THEN 1 ELSE 0 END)
FROM report_member_round
GROUP BY member_id""",
    ),
    sqlite_key="member_id",
)

ROUND_TOTALS = replace(ROUND_TOTALS, folded_fill=Query(
    "fill_round_totals_folded", "工作集：各轮合计（用折叠时）",
    "When the report uses the folds: the unfolded rounds summed from report_member_round as in "
    "`fill_round_totals`, and each folded round from its totals per organisation "
    "(`roundorgtotals`) over the scope's organisations, plus its late answers, which may have "
    "come after the fold and are read from the answer tally round by round (CROSS JOIN; its "
    "partial index on late > 0 holds only those rows, usually few), then their members: late, "
    "and as returned (回收) the member-rounds answered only late "
    "(`answered` counts those with an on-time answer). A 党委's 50 rounds: 15,000 rows instead "
    "of 500,000 member-rounds.",
    """WITH scope_orgs AS (
    SELECT id FROM organization WHERE path LIKE :scope
),
folded_rounds AS (
    SELECT r.id AS round_id
    FROM round r
    WHERE r.opens_at >= :start AND r.opens_at < :end AND r.id IN (SELECT round_id FROM report_folded)
)
INSERT INTO report_round (round_id, pushed, returned, responded, answers, correct, late, retired)
SELECT round_id, SUM(pushed), SUM(returned), SUM(responded), SUM(answers), SUM(correct), SUM(late), SUM(retired)
FROM (
    SELECT round_id, pushed, returned, CASE WHEN answers > 0 THEN 1 ELSE 0 END AS responded, answers,
           correct, late, retired
    FROM report_member_round
    UNION ALL
    SELECT o.round_id, o.pushed, o.answered, o.responded, o.answers, o.correct, 0, o.retired
    FROM roundorgtotals o
    WHERE o.round_id IN (SELECT round_id FROM folded_rounds) AND o.org_id IN (SELECT id FROM scope_orgs)
    UNION ALL
    SELECT t.round_id, 0, CASE WHEN t.on_time = 0 THEN 1 ELSE 0 END, 0, 0, 0, t.late, 0
    FROM folded_rounds f
    CROSS JOIN answertally t
    JOIN member m ON m.id = t.member_id
    WHERE t.round_id = f.round_id AND t.late > 0 AND m.org_id IN (SELECT id FROM scope_orgs)
) x
GROUP BY round_id""",
))

# Per member of the scope, their sums over the period's folded rounds: the difference of their
# running totals (`memberprefix`) at the last folded round that opened before :end and before
# :start. SQLite finds each row's key with a correlated look-up and joins it by the primary key;
# PostgreSQL reads the rows with LATERAL look-ups (joining them instead, it hashed all 500,000).
_PREFIX_AT = """SELECT {what} FROM memberprefix q
            WHERE q.member_id = mu.member_id AND q.opens_at < {bound}
              AND q.opens_at <= (SELECT opens_at FROM frontier)
              AND (q.opens_at < (SELECT opens_at FROM frontier) OR q.round_id <= (SELECT round_id FROM frontier))
            ORDER BY q.opens_at DESC, q.round_id DESC LIMIT 1"""
# The latest folded round when the report began: running totals of rounds folded since (which
# opened after it) are not read. (Comparing with it, not looking each row up in report_folded,
# saved PostgreSQL a quarter of the look-ups' time.)
_FRONTIER = """frontier AS MATERIALIZED (
    SELECT r.opens_at, r.id AS round_id FROM round r
    WHERE r.id IN (SELECT round_id FROM report_folded)
    ORDER BY r.opens_at DESC, r.id DESC LIMIT 1
)"""
_DIFFERENCES = """b.pushed - COALESCE(a.pushed, 0) AS pushed, b.responded - COALESCE(a.responded, 0) AS responded,
           b.answers - COALESCE(a.answers, 0) AS answers, b.correct - COALESCE(a.correct, 0) AS correct,
           b.missed - COALESCE(a.missed, 0) AS missed"""
_FOLDED_SUMS = {
    "sqlite": """    SELECT e.member_id, e.unit_id, """ + _DIFFERENCES + """
    FROM (
        SELECT mu.member_id, mu.unit_id,
               (""" + _PREFIX_AT.format(what="q.round_id", bound=":end") + """) AS last_id,
               (""" + _PREFIX_AT.format(what="q.round_id", bound=":start") + """) AS before_id
        FROM member_unit mu
    ) e
    JOIN memberprefix b ON b.member_id = e.member_id AND b.round_id = e.last_id
    LEFT JOIN memberprefix a ON a.member_id = e.member_id AND a.round_id = e.before_id
    WHERE e.before_id IS NULL OR e.before_id <> e.last_id""",
    "postgresql": """    SELECT mu.member_id, mu.unit_id, """ + _DIFFERENCES + """
    FROM member_unit mu
    CROSS JOIN LATERAL (
            """ + _PREFIX_AT.format(what="q.*", bound=":end") + """
    ) b
    LEFT JOIN LATERAL (
            """ + _PREFIX_AT.format(what="q.*", bound=":start") + """
    ) a ON true
    WHERE a.round_id IS NULL OR a.round_id <> b.round_id""",
}

MEMBER_TOTALS = replace(MEMBER_TOTALS, folded_fill=Query(
    "fill_member_totals_folded", "工作集：成员合计（用折叠时）",
    "When the report uses the folds: per member of the scope, the folded rounds of the period "
    "are the difference of their running totals (`memberprefix`) at the period's two ends — two "
    "index look-ups per member whatever the number of rounds (`folded`) — and the unfolded ones "
    "are summed from report_member_round as in `fill_member_totals`. A member with no "
    "member-round in the period gets no row, as there.",
    _with(_BASE) + ", " + _MEMBER_UNIT + """,
""" + _FRONTIER + """,
folded AS (
{folded_sums}
)
INSERT INTO report_member (member_id, unit_id, pushed, responded, answers, correct, missed)
SELECT member_id, MIN(unit_id), SUM(pushed), SUM(responded), SUM(answers), SUM(correct), SUM(missed)
FROM (
    SELECT member_id, unit_id, pushed, responded, answers, correct, missed FROM folded
    UNION ALL
    SELECT member_id, unit_id, pushed, CASE WHEN answers > 0 THEN 1 ELSE 0 END, answers, correct,
           CASE WHEN pushed = 1 AND answers = 0 THEN 1 ELSE 0 END
    FROM report_member_round
) x
GROUP BY member_id""",
))

ANSWERS = WorkTable(
    "report_answer",
    "member_id INTEGER NOT NULL, round_id INTEGER NOT NULL, item_id VARCHAR(64) NOT NULL,\n"
    "    choice VARCHAR(8) NOT NULL, correct INTEGER NOT NULL",
    Query(
        "fill_answers", "工作集：有效作答",
        "The valid answers (on time, item not retired) of the scope's members in the period's "
        "rounds, read by the two id lists: a branch's month reads only its own rows through the "
        "answer (member_id, round_id, item_id) unique index. correct is 1 or 0. Only the per-item "
        "tables need answers one by one.",
        _with(_BASE) + """INSERT INTO report_answer (member_id, round_id, item_id, choice, correct)
SELECT a.member_id, a.round_id, a.item_id, a.choice, CASE WHEN a.correct THEN 1 ELSE 0 END
FROM answer a
WHERE a.round_id IN (SELECT round_id FROM period_rounds)
  AND a.member_id IN (SELECT member_id FROM scope_members)
  AND NOT a.late
  AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')""",
    ),
)


SUMMARY = Query(
    "summary", "作答情况与总体正确率",
    "One row. members = active members in the scope now; pushed = deliveries; returned = "
    "member-rounds with any answer (回收); responded = member-rounds with a valid answer (有效); "
    "people = distinct members with a valid answer; late and retired answers are counted apart "
    "and excluded from valid_answers. The sums come from report_round, people from report_member.",
    """SELECT
    (SELECT COUNT(*) FROM member m
     WHERE m.org_id IN (SELECT id FROM organization WHERE path LIKE :scope) AND m.active) AS members,
    COALESCE(SUM(pushed), 0) AS pushed,
    COALESCE(SUM(returned), 0) AS returned,
    COALESCE(SUM(responded), 0) AS responded,
    (SELECT COUNT(*) FROM report_member WHERE answers > 0) AS people,
    COALESCE(SUM(answers), 0) AS valid_answers,
    COALESCE(SUM(correct), 0) AS correct_answers,
    COALESCE(SUM(late), 0) AS late_answers,
    COALESCE(SUM(retired), 0) AS retired_answers
FROM report_round""",
)

ITEMS = Query(
    "items", "各题正确率",
    "One row per item answered. people = distinct members (the privacy floor applies to it).",
    """SELECT n.item_id, bi.stem, bi.type, bi.answer AS answer_key, n.answers, n.correct, n.people
FROM (
    SELECT item_id, COUNT(*) AS answers, SUM(correct) AS correct, COUNT(DISTINCT member_id) AS people
    FROM report_answer GROUP BY item_id
) n
JOIN bankitem bi ON bi.id = n.item_id
ORDER BY n.item_id""",
)

OPTIONS = Query(
    "options", "各题选项分布（图表）",
    "One row per item and exact choice ('ACD' for a multiple-choice answer). The charts count "
    "a multiple-choice answer towards each letter it contains.",
    """SELECT item_id, choice, COUNT(*) AS answers
FROM report_answer
GROUP BY item_id, choice
ORDER BY item_id, choice""",
)

TOPICS = Query(
    "topics", "各主题正确率",
    "One row per topic; an item with two topics counts in both. (CROSS JOIN: SQLite reads the "
    "answers once and looks their topics up, instead of indexing a million answers by item.)",
    """SELECT it.topic, COUNT(DISTINCT v.item_id) AS items, COUNT(*) AS answers, SUM(v.correct) AS correct,
       COUNT(DISTINCT v.member_id) AS people
FROM report_answer v CROSS JOIN itemtopic it
WHERE it.item_id = v.item_id
GROUP BY it.topic
ORDER BY it.topic""",
)

WEEKS = Query(
    "weeks", "分周趋势",
    "One row per local calendar week (Monday) in which rounds reached the scope. pushed_people = "
    "distinct members pushed that week. The rounds' totals (report_round) are summed per week: "
    "a member has one member-round per round, so in a week with one round the people are the responded "
    "member-rounds and the pushed people the deliveries. Only weeks with several rounds count "
    "their distinct members (`shared_people`; the EXISTS skips it when there is none), from the "
    "scope's rows of the answer tally for those rounds, as `fill_member_rounds` reads them "
    "(report_member_round holds only the unfolded rounds when the report uses the folds): "
    "counting them for every week sorted a 党委's 500,000 member-rounds over 50 weeks (SQLite "
    "680 ms; now 230).",
    _with(_BASE, _RETIRED) + """, week_rounds AS MATERIALIZED (
    SELECT id AS round_id, {week} AS week FROM round
    WHERE id IN (SELECT round_id FROM report_round)
),
shared AS MATERIALIZED (
    SELECT week FROM week_rounds GROUP BY week HAVING COUNT(*) > 1
),
shared_people AS (
    SELECT w.week, COUNT(DISTINCT CASE WHEN t.on_time - COALESCE(x.answers, 0) > 0 THEN t.member_id END) AS people,
           COUNT(DISTINCT CASE WHEN t.pushed = 1 THEN t.member_id END) AS pushed_people
    FROM week_rounds w
    CROSS JOIN answertally t
    LEFT JOIN retired x ON x.member_id = t.member_id AND x.round_id = t.round_id
    WHERE EXISTS (SELECT 1 FROM shared) AND w.week IN (SELECT week FROM shared)
      AND t.round_id = w.round_id AND t.member_id IN (SELECT member_id FROM scope_members)
    GROUP BY w.week
)
SELECT w.week, SUM(CASE WHEN p.pushed > 0 THEN 1 ELSE 0 END) AS rounds, SUM(p.pushed) AS pushed,
       SUM(p.responded) AS responded, SUM(p.answers) AS answers, SUM(p.correct) AS correct,
       COALESCE(MAX(s.people), SUM(p.responded)) AS people,
       COALESCE(MAX(s.pushed_people), SUM(p.pushed)) AS pushed_people
FROM report_round p
JOIN week_rounds w ON w.round_id = p.round_id
LEFT JOIN shared_people s ON s.week = w.week
GROUP BY w.week
HAVING SUM(p.pushed) > 0
ORDER BY w.week""",
)

UNITS = Query(
    "units", "下级组织对比",
    "One row per child organisation (its whole subtree) plus one for members attached directly "
    "to the scope organisation. For a branch's rank among its siblings, fill the working set "
    "with the parent as the scope (its member-rounds only) and run this. Summed from the members' "
    "totals (report_member), so people and pushed people are counted members, not COUNT(DISTINCT) "
    "over every member-round (a 党委's 50 rounds: 255 ms on SQLite).",
    _with(_UNITS) + """
SELECT u.unit_id, u.unit_name, COALESCE(a.pushed, 0) AS pushed,
       COALESCE(a.responded, 0) AS responded, COALESCE(a.answers, 0) AS answers,
       COALESCE(a.correct, 0) AS correct, COALESCE(a.people, 0) AS people,
       COALESCE(a.pushed_people, 0) AS pushed_people
FROM units u
LEFT JOIN (
    SELECT unit_id, SUM(pushed) AS pushed, SUM(responded) AS responded, SUM(answers) AS answers,
           SUM(correct) AS correct, SUM(CASE WHEN answers > 0 THEN 1 ELSE 0 END) AS people,
           SUM(CASE WHEN pushed > 0 THEN 1 ELSE 0 END) AS pushed_people
    FROM report_member GROUP BY unit_id
) a ON a.unit_id = u.unit_id
ORDER BY u.unit_id""",
)

MEMBER_SCORES = Query(
    "member_scores", "（统计检验的输入，不在报告中列出）",
    "The members pushed in the period, by member id: their unit, 行政级别 ordinal, 入党年份 and valid "
    "answers. The per-member test across units and the correlations run on these vectors; no "
    "member row is ever shown. One row of arrays (one per column, in member order: PostgreSQL "
    "array_agg, SQLite json_group_array as JSON text) instead "
    "of a row per member: a 党委's ten thousand rows were ten thousand result objects for Python "
    "to make and its garbage collector to walk (a full collection of the bot's heap took 70-110 "
    "ms here, one report in two). The arrays are filled in the order of the ordered subquery "
    "(one sort; an ORDER BY inside each json_agg sorted six times), which neither database "
    "promises: the reader checks that the member ids ascend and sorts the columns if not.",
    """SELECT {json_agg}(s.member_id) AS member_id, {json_agg}(s.unit_id) AS unit_id,
       {json_agg}(s.rank_level) AS rank_level,
       {json_agg}(s.joined_party_year) AS joined_party_year,
       {json_agg}(s.answers) AS answers, {json_agg}(s.correct) AS correct
FROM (
    SELECT p.member_id, p.unit_id, m.rank_level, m.joined_party_year, p.answers, p.correct
    FROM report_member p
    JOIN member m ON m.id = p.member_id
    WHERE p.pushed > 0
    ORDER BY p.member_id
) s""",
)

BY_ATTRIBUTE = Query(
    "by_attribute", "按人员属性（行政级别、职务、党龄、人群标签）",
    "One row per attribute and group, over the members with a valid answer (people = members, "
    "answers and correct their totals). attribute 'rank': grp = member.rank_level (ordinal); "
    "'position': member.position as recorded; 'party_age': 党龄 band from 入党年份 (1 = under 5 "
    "years, 2 = 5–9, 3 = 10–19, 4 = 20–29, 5 = 30 and more); 'tag': each cohort tag in "
    "member.tags (a member with two tags counts in both; members without tags are not in it). "
    "NULL = not recorded.",
    """WITH scores AS (
    SELECT member_id, answers, correct FROM report_member WHERE answers > 0
),
scored AS (
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

# The latest :max_rounds rounds of the period that reached the scope (a delivery to one of its
# members): the rounds given an item analysis.
_ANALYSED = """analysed AS (
    SELECT p.round_id, p.pushed
    FROM report_round p
    JOIN round r ON r.id = p.round_id
    WHERE p.pushed > 0
    ORDER BY r.opens_at DESC, r.id DESC
    LIMIT :max_rounds
)"""

# The current (not retired) items of each analysed round.
_ROUND_SIZE = """round_size AS (
    SELECT ri.round_id, COUNT(*) AS items
    FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
    WHERE ri.round_id IN (SELECT round_id FROM {rounds}) AND bi.status <> 'retired'
    GROUP BY ri.round_id
)"""

ROUNDS = Query(
    "rounds", "题目质量分析：轮次",
    "The latest :max_rounds rounds of the period that reached the scope (older ones are in older "
    "reports), oldest first: current (not retired) items and members pushed.",
    _with(_ANALYSED) + """SELECT r.id AS round_id, r.title, r.opens_at,
       (SELECT COUNT(*) FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
        WHERE ri.round_id = r.id AND bi.status <> 'retired') AS items,
       a.pushed
FROM analysed a JOIN round r ON r.id = a.round_id
ORDER BY r.opens_at, r.id""",
)

ROUND_MARKS = Query(
    "round_marks", "题目质量分析：作答矩阵（按题汇总）",
    "The item analysis' input for the rounds of `rounds`, summed so that no member row leaves "
    "the database: per round, item, first-attempt mark (1/0) and the member's total mark in the "
    "round, how many members. Only members who answered every current item of the round on "
    "time count (Moodle's finished attempts). Every item-analysis figure (facility, SD, "
    "discrimination, efficiency, Cronbach's α) is a function of these counts: an item's marks "
    "and rest-of-test scores are the pairs (mark, total − mark), each repeated members times. "
    "marks and complete are MATERIALIZED so the join reads only the analysed rounds' answers; "
    "complete counts them per member-round (not report_member_round, which holds only the "
    "unfolded rounds when the report uses the folds).",
    _with(_ANALYSED) + """, """ + _ROUND_SIZE.format(rounds="analysed") + """,
marks AS MATERIALIZED (
    SELECT member_id, round_id, item_id, correct FROM report_answer
    WHERE round_id IN (SELECT round_id FROM analysed)
),
complete AS MATERIALIZED (
    SELECT m.member_id, m.round_id, SUM(m.correct) AS total
    FROM marks m JOIN round_size rs ON rs.round_id = m.round_id
    GROUP BY m.member_id, m.round_id, rs.items
    HAVING COUNT(*) = rs.items
)
SELECT a.round_id, a.item_id, a.correct AS mark, c.total, COUNT(*) AS members
FROM marks a JOIN complete c ON c.member_id = a.member_id AND c.round_id = a.round_id
GROUP BY a.round_id, a.item_id, a.correct, c.total
ORDER BY a.round_id, a.item_id, a.correct, c.total""",
)

NONRESPONDERS = Query(
    "nonresponders", "未作答名单（仅在组织开启后）",
    "Members pushed in the period and the rounds they left without a valid answer. Run only "
    "when the organisation (or an ancestor) has named_nonresponders switched on.",
    """SELECT m.id AS member_id, m.name, o.name AS org_name, rm.missed
FROM report_member rm
JOIN member m ON m.id = rm.member_id
JOIN organization o ON o.id = m.org_id
WHERE rm.missed > 0
ORDER BY o.name, m.name""",
)

_FILL_CTES, _FILL_INSERT = MEMBER_ROUNDS.fill.template.split("INSERT INTO report_member_round", 1)
assert _FILL_INSERT.rstrip().endswith(
    "WHERE t.member_id = mu.member_id AND t.round_id IN (SELECT round_id FROM period_rounds)")

# Per member, what the answers to items retired since take off the answer tally's sums: answers,
# correct, and `emptied` = member-rounds left without a valid answer (no longer responded).
# `siblings` sums per member and takes these off afterwards instead of joining every
# member-round to `retired` (for a member-round: valid = on_time - retired answers; responded
# when that is > 0 — on_time > 0 less the emptied ones).
_RETIRED_BY_MEMBER = """retired_by_member AS (
    SELECT x.member_id, SUM(x.answers) AS answers, SUM(x.correct) AS correct,
           SUM(CASE WHEN t.on_time > 0 AND t.on_time - x.answers <= 0 THEN 1 ELSE 0 END) AS emptied
    FROM retired x JOIN answertally t ON t.member_id = x.member_id AND t.round_id = x.round_id
    GROUP BY x.member_id
)"""

SIBLINGS = Query(
    "siblings", "同级组织中的排名（支部报告）",
    "A branch's rank among its siblings, without filling the working set for the parent: the "
    "parent is the scope (:scope, :scope_id) and its member-rounds are read from the answer "
    "tally as `fill_member_rounds` reads them (same CTEs), summed per member once. Rows of kind "
    "'unit' are `units` over those member-rounds; rows of kind 'member' are `member_scores` "
    "(member, unit, valid answers, correct) for the per-member test. Only the rank and the two "
    "tests are shown. The tally rows are summed per member as they are (`tallied`: a branch's "
    "50 rounds are the parent's 51,000 member-rounds); answers to items retired since are taken "
    "off the few members who have any afterwards (`retired_by_member`; `emptied` = member-rounds "
    "left without a valid answer, which then no longer count as responded), instead of joining "
    "every member-round to them: the same figures.",
    _FILL_CTES + """, tallied AS MATERIALIZED (
    SELECT t.member_id, mu.unit_id, SUM(t.pushed) AS pushed,
           SUM(CASE WHEN t.on_time > 0 THEN 1 ELSE 0 END) AS answered,
           SUM(t.on_time) AS on_time, SUM(t.on_time_correct) AS on_time_correct
    FROM member_unit mu
    CROSS JOIN answertally t
    WHERE t.member_id = mu.member_id AND t.round_id IN (SELECT round_id FROM period_rounds)
    GROUP BY t.member_id, mu.unit_id
),
""" + _RETIRED_BY_MEMBER + """,
per_member AS MATERIALIZED (
    SELECT s.member_id, s.unit_id, s.pushed, s.answered - COALESCE(r.emptied, 0) AS responded,
           s.on_time - COALESCE(r.answers, 0) AS answers, s.on_time_correct - COALESCE(r.correct, 0) AS correct
    FROM tallied s LEFT JOIN retired_by_member r ON r.member_id = s.member_id
),
""" + _UNITS + """
SELECT 'unit' AS kind, u.unit_id, NULL AS member_id, u.unit_name AS name, COALESCE(SUM(p.pushed), 0) AS pushed,
       COALESCE(SUM(p.responded), 0) AS responded, COALESCE(SUM(p.answers), 0) AS answers,
       COALESCE(SUM(p.correct), 0) AS correct,
       COALESCE(SUM(CASE WHEN p.answers > 0 THEN 1 ELSE 0 END), 0) AS people,
       COALESCE(SUM(CASE WHEN p.pushed > 0 THEN 1 ELSE 0 END), 0) AS pushed_people
FROM units u LEFT JOIN per_member p ON p.unit_id = u.unit_id
GROUP BY u.unit_id, u.unit_name
UNION ALL
SELECT 'member', unit_id, member_id, NULL, pushed, responded, answers, correct, 0, 0
FROM per_member WHERE pushed > 0
ORDER BY 1 DESC, 2, 3""",
)

_PER_MEMBER = """per_member AS MATERIALIZED (
    SELECT s.member_id, s.unit_id, s.pushed, s.answered - COALESCE(r.emptied, 0) AS responded,
           s.on_time - COALESCE(r.answers, 0) AS answers, s.on_time_correct - COALESCE(r.correct, 0) AS correct
    FROM tallied s LEFT JOIN retired_by_member r ON r.member_id = s.member_id
),"""
assert SIBLINGS.template.count(_PER_MEMBER) == 1 and SIBLINGS.template.count(_PERIOD_ROUNDS_OF_BASE) == 1

SIBLINGS_FOLDED = Query(
    "siblings_folded", "同级组织中的排名（支部报告，用折叠时）",
    "As `siblings` when the report uses the folds: the tally is read for the period's unfolded "
    "rounds only, and each member's folded rounds are the difference of their running totals, "
    "as in `fill_member_totals_folded` (a branch's 50 rounds: two look-ups for each of the "
    "parent's thousand members instead of their 51,000 member-rounds).",
    SIBLINGS.template.replace(_PERIOD_ROUNDS_OF_BASE, _UNFOLDED_PERIOD).replace(_PER_MEMBER, """unfolded_member AS (
    SELECT s.member_id, s.unit_id, s.pushed, s.answered - COALESCE(r.emptied, 0) AS responded,
           s.on_time - COALESCE(r.answers, 0) AS answers, s.on_time_correct - COALESCE(r.correct, 0) AS correct
    FROM tallied s LEFT JOIN retired_by_member r ON r.member_id = s.member_id
),
""" + _FRONTIER + """,
folded AS (
{folded_sums}
),
per_member AS MATERIALIZED (
    SELECT member_id, MIN(unit_id) AS unit_id, SUM(pushed) AS pushed, SUM(responded) AS responded,
           SUM(answers) AS answers, SUM(correct) AS correct
    FROM (
        SELECT member_id, unit_id, pushed, responded, answers, correct FROM unfolded_member
        UNION ALL
        SELECT member_id, unit_id, pushed, responded, answers, correct FROM folded
    ) x
    GROUP BY member_id
),"""),
)


PREVIOUS = Query(
    "previous", "与上一轮（上一期）比较",
    "The previous round's or period's valid answers, how many were right and people (distinct "
    "members with a valid answer: the privacy floor), read from the answer tally as "
    "`fill_member_rounds` reads it and summed at once: the same figures as `summary` over a "
    "working set filled for that period, without filling it (one statement instead of "
    "refilling, analysing and summing a temporary table).",
    _with(_BASE, _RETIRED) + """SELECT COALESCE(SUM(t.on_time - COALESCE(x.answers, 0)), 0) AS valid_answers,
       COALESCE(SUM(t.on_time_correct - COALESCE(x.correct, 0)), 0) AS correct_answers,
       COUNT(DISTINCT CASE WHEN t.on_time - COALESCE(x.answers, 0) > 0 THEN t.member_id END) AS people
FROM scope_members sm
CROSS JOIN answertally t
LEFT JOIN retired x ON x.member_id = t.member_id AND x.round_id = t.round_id
WHERE t.member_id = sm.member_id AND t.round_id IN (SELECT round_id FROM period_rounds)""",
)

PREVIOUS_FOLDED = Query(
    "previous_folded", "与上一轮比较（上一轮已折叠时）",
    "As `previous` when the previous period is one round that is folded: its totals per "
    "organisation (`roundorgtotals`) over the scope's organisations. In one round a member has "
    "one member-round, so the people are the responded member-rounds.",
    """SELECT COALESCE(SUM(o.answers), 0) AS valid_answers, COALESCE(SUM(o.correct), 0) AS correct_answers,
       COALESCE(SUM(o.responded), 0) AS people
FROM roundorgtotals o
WHERE o.round_id = :round_id AND o.org_id IN (SELECT id FROM organization WHERE path LIKE :scope)""",
)

PREVIOUS_FOLDED_PERIOD = Query(
    "previous_folded_period", "与上一期比较（用折叠时）",
    "As `previous` for a previous period of several rounds when the report uses the folds: each "
    "member's folded rounds of that period are the difference of their running totals "
    "(`fill_member_totals_folded`), the unfolded ones are read from the tally, and the members "
    "with a valid answer are those whose sum is above zero (a year's previous year: two look-ups "
    "per member instead of 480,000 member-rounds, 300 ms on PostgreSQL).",
    (_with(_BASE) + ", " + _MEMBER_UNIT + ",\n" + _RETIRED + """,
""" + _FRONTIER + """,
folded AS (
{folded_sums}
),
per_member AS (
    SELECT member_id, SUM(answers) AS answers, SUM(correct) AS correct
    FROM (
        SELECT member_id, answers, correct FROM folded
        UNION ALL
        SELECT t.member_id, t.on_time - COALESCE(x.answers, 0), t.on_time_correct - COALESCE(x.correct, 0)
        FROM scope_members sm
        CROSS JOIN answertally t
        LEFT JOIN retired x ON x.member_id = t.member_id AND x.round_id = t.round_id
        WHERE t.member_id = sm.member_id AND t.round_id IN (SELECT round_id FROM period_rounds)
    ) x
    GROUP BY member_id
)
SELECT COALESCE(SUM(answers), 0) AS valid_answers, COALESCE(SUM(correct), 0) AS correct_answers,
       COALESCE(SUM(CASE WHEN answers > 0 THEN 1 ELSE 0 END), 0) AS people
FROM per_member""").replace(_PERIOD_ROUNDS_OF_BASE, _UNFOLDED_PERIOD),
)


# --- Reports whose scope holds every on-time answer of its rounds (e.g. a 党委 over its tree) ---
# Then the per-item tables are read from the item tally (bot/reports/tally.py) and the answers
# are not copied into the working set. `coverage` decides it, after the member-rounds are filled.

_PERIOD_ROUNDS = """period_rounds AS (
    SELECT r.id AS round_id
    FROM round r
    WHERE r.opens_at >= :start AND r.opens_at < :end{round_filter}
)"""

ITEM_COUNTS = WorkTable(
    "report_item_count",
    "round_id INTEGER NOT NULL, item_id VARCHAR(64) NOT NULL, choice VARCHAR(8) NOT NULL,\n"
    "    answers INTEGER NOT NULL, correct INTEGER NOT NULL",
    Query(
        "fill_item_counts", "工作集：各题各选项计数（范围含全部作答时）",
        "Filled instead of report_answer when `coverage` finds that the scope holds every on-time "
        "answer of the period's rounds: the item tally's valid part (period's rounds, items not "
        "retired), summed over its shards, read once so that items, options and topics count the "
        "same answers.",
        _with(_PERIOD_ROUNDS) + """INSERT INTO report_item_count (round_id, item_id, choice, answers, correct)
SELECT t.round_id, t.item_id, t.choice, SUM(t.answers), SUM(t.correct)
FROM itemtally t JOIN bankitem bi ON bi.id = t.item_id
WHERE t.round_id IN (SELECT round_id FROM period_rounds) AND bi.status <> 'retired'
GROUP BY t.round_id, t.item_id, t.choice""",
    ),
)

WORKING_SET: tuple[WorkTable, ...] = (FOLDED, MEMBER_ROUNDS, ROUND_TOTALS, MEMBER_TOTALS, ANSWERS, ITEM_COUNTS)

COVERAGE = Query(
    "coverage", "（是否可用题目计数表）",
    "Run after filling report_member_round and report_round. scope = the scope's on-time answers "
    "in the period's rounds (valid + retired, from the rounds' totals); everyone = all on-time answers of those "
    "rounds (the item tally). The scope's answers are a subset of all, so equal counts mean the "
    "same answers: then report_item_count is filled from the item tally instead of "
    "report_answer, and items, options and topics run as the *_all queries below. Otherwise (a "
    "branch, a 党总支, or a member who left the tree with answers) the working-set queries run.",
    _with(_PERIOD_ROUNDS) + """SELECT (SELECT COALESCE(SUM(answers + retired), 0) FROM report_round) AS scope,
       (SELECT COALESCE(SUM(answers), 0) FROM itemtally
        WHERE round_id IN (SELECT round_id FROM period_rounds)) AS everyone""",
)

ITEMS_ALL = Query(
    "items_all", "各题正确率（范围含全部作答时）",
    "As `items`, from report_item_count. people: a member has one stored answer per round and "
    "item, so an item asked in one round of the period has as many people as answers; for an "
    "item asked in several rounds the distinct members are counted from its answers (by the "
    "answer (round_id, item_id) index).",
    _with(_PERIOD_ROUNDS) + """, n AS (
    SELECT item_id, SUM(answers) AS answers, SUM(correct) AS correct, COUNT(DISTINCT round_id) AS rounds
    FROM report_item_count GROUP BY item_id
)
SELECT n.item_id, bi.stem, bi.type, bi.answer AS answer_key, n.answers, n.correct,
       CASE WHEN n.rounds = 1 THEN n.answers ELSE (
           SELECT COUNT(DISTINCT a.member_id) FROM answer a
           WHERE a.round_id IN (SELECT round_id FROM period_rounds) AND a.item_id = n.item_id AND NOT a.late
       ) END AS people
FROM n JOIN bankitem bi ON bi.id = n.item_id
ORDER BY n.item_id""",
)

OPTIONS_ALL = Query(
    "options_all", "各题选项分布（范围含全部作答时）",
    "As `options`, from report_item_count.",
    """SELECT item_id, choice, SUM(answers) AS answers
FROM report_item_count
GROUP BY item_id, choice
ORDER BY item_id, choice""",
)

# Items, answers and right answers per topic, from the item tally's counts (report_item_count).
_TOPIC_COUNTS = """counted AS (
    SELECT it.topic, COUNT(DISTINCT v.item_id) AS items, SUM(v.answers) AS answers, SUM(v.correct) AS correct
    FROM report_item_count v CROSS JOIN itemtopic it
    WHERE it.item_id = v.item_id
    GROUP BY it.topic
)"""

TOPICS_ALL = Query(
    "topics_all", "各主题正确率（范围含全部作答时）",
    "As `topics`: items, answers and correct from report_item_count. people = distinct members "
    "with a valid answer to one of the topic's items, which no sum of counts gives, so it is "
    "still counted from the answers of the period's rounds.",
    _with(_PERIOD_ROUNDS) + """, """ + _TOPIC_COUNTS + """,
people AS (
    SELECT it.topic, COUNT(DISTINCT a.member_id) AS people
    FROM answer a CROSS JOIN itemtopic it
    WHERE a.round_id IN (SELECT round_id FROM period_rounds) AND NOT a.late
      AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
      AND it.item_id = a.item_id
    GROUP BY it.topic
)
SELECT c.topic, c.items, c.answers, c.correct, p.people
FROM counted c JOIN people p ON p.topic = c.topic
ORDER BY c.topic""",
)

TOPICS_REACHED = Query(
    "topics_reached", "各主题正确率（范围含全部作答、主题覆盖已折叠时）",
    "As `topics_all`, with people taken from the topic reach (`topicreach`, docs below): a member "
    "reached a topic in a period that runs to the present when the latest folded round in which "
    "they answered it opened inside the period; the rounds not folded yet (`fresh_rounds`, the "
    "open ones) are read from the answers, and their members already counted by the reach are "
    "not counted twice. Used when the scope holds every answer (`coverage`), the period has "
    "several rounds and reaches the present, and the reach was folded with the item-topic links "
    "and retired items there are now; otherwise `topics_all` runs. A 党委's 50 rounds: the "
    "reach's 100,000-odd rows instead of a million answers.",
    _with(_PERIOD_ROUNDS) + """, fresh_rounds AS (
    SELECT round_id FROM period_rounds WHERE round_id NOT IN (SELECT round_id FROM report_folded)
),
""" + _TOPIC_COUNTS + """,
fresh AS (
    SELECT DISTINCT it.topic, a.member_id
    FROM answer a CROSS JOIN itemtopic it
    WHERE a.round_id IN (SELECT round_id FROM fresh_rounds) AND NOT a.late
      AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
      AND it.item_id = a.item_id
),
people AS (
    SELECT topic, SUM(n) AS people
    FROM (
        SELECT topic, COUNT(*) AS n FROM topicreach WHERE last_opens_at >= :start GROUP BY topic
        UNION ALL
        SELECT f.topic, COUNT(*) FROM fresh f
        WHERE NOT EXISTS (SELECT 1 FROM topicreach r
                          WHERE r.topic = f.topic AND r.member_id = f.member_id AND r.last_opens_at >= :start)
        GROUP BY f.topic
    ) x
    GROUP BY topic
)
SELECT c.topic, c.items, c.answers, c.correct, p.people
FROM counted c JOIN people p ON p.topic = c.topic
ORDER BY c.topic""",
)

# Complete member-rounds of the (:rounds) rounds, from report_member_round, and their marks read
# from the answer table by its (member_id, round_id, item_id) unique index.
_MARKS_OF_COMPLETE = """complete AS MATERIALIZED (
    SELECT mr.member_id, mr.round_id, mr.correct AS total
    FROM report_member_round mr JOIN round_size rs ON rs.round_id = mr.round_id
    WHERE mr.answers = rs.items
)
SELECT a.round_id, a.item_id, CASE WHEN a.correct THEN 1 ELSE 0 END AS mark, c.total, COUNT(*) AS members
FROM complete c CROSS JOIN answer a
WHERE a.member_id = c.member_id AND a.round_id = c.round_id AND NOT a.late
  AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
GROUP BY a.round_id, a.item_id, CASE WHEN a.correct THEN 1 ELSE 0 END, c.total"""

ROUND_MARKS_ALL = Query(
    "round_marks_all", "题目质量分析：作答矩阵（范围含全部作答时）",
    "As `round_marks`, with the complete member-rounds taken from report_member_round and their "
    "marks read from the answer table instead of report_answer (by the answer (member_id, "
    "round_id, item_id) unique index; CROSS JOIN: SQLite joins in the order written), so only "
    "the complete members' answers are read — not every answer of the analysed rounds, copied "
    "and then matched to them (SQLite built an index on that copy: 113 → 66 ms for a 党委's "
    "round, 948 → 616 ms for 12 rounds; PostgreSQL about the same either way).",
    _with(_ANALYSED) + ", " + _ROUND_SIZE.format(rounds="analysed") + ",\n" + _MARKS_OF_COMPLETE
    + "\nORDER BY 1, 2, 3, 4",
)

ROUND_MARKS_FOLDED = Query(
    "round_marks_folded", "题目质量分析：作答矩阵（范围含全部作答、轮次已折叠时）",
    "As `round_marks_all`, with the folded rounds (report_folded) read from `roundmarks` (their "
    "rows over every member, which are the scope's when it holds every answer) and only the "
    "others (`unfolded`: open rounds, which report_member_round holds) computed from the "
    "answers. Used when the report uses the folds and the scope holds every answer (`coverage`).",
    _with(_ANALYSED) + """,
unfolded AS (
    SELECT round_id FROM analysed WHERE round_id NOT IN (SELECT round_id FROM report_folded)
),
""" + _ROUND_SIZE.format(rounds="unfolded") + ",\n" + _MARKS_OF_COMPLETE + """
UNION ALL
SELECT round_id, item_id, mark, total, members FROM roundmarks
WHERE round_id IN (SELECT round_id FROM analysed) AND round_id IN (SELECT round_id FROM report_folded)
ORDER BY 1, 2, 3, 4""",
)

ROUND_MARKS_OF_FOLDED = Query(
    "round_marks_of_folded", "题目质量分析：作答矩阵（单轮、已折叠、范围含全部作答时）",
    "A one-round report of a folded round whose scope holds every answer: the round's rows of "
    "`roundmarks`, which are `round_marks_all`'s for it (a 党委's finished round: 1 ms instead of "
    "reading its complete members' 50,000 answers, 25–38 ms). `rounds` has already checked that "
    "the round reached the scope.",
    """SELECT round_id, item_id, mark, total, members FROM roundmarks
WHERE round_id = :round_id
ORDER BY 1, 2, 3, 4""",
)

ALL: tuple[Query, ...] = (SUMMARY, ITEMS, OPTIONS, TOPICS, WEEKS, UNITS, MEMBER_SCORES, BY_ATTRIBUTE, ROUNDS,
                          ROUND_MARKS, NONRESPONDERS, SIBLINGS, SIBLINGS_FOLDED, PREVIOUS, PREVIOUS_FOLDED,
                          PREVIOUS_FOLDED_PERIOD, COVERAGE,
                          ITEMS_ALL, OPTIONS_ALL, TOPICS_ALL, TOPICS_REACHED, ROUND_MARKS_ALL, ROUND_MARKS_FOLDED,
                          ROUND_MARKS_OF_FOLDED)

_WEEK = {
    # Monday of the local week: SQLite has no named zones, so a fixed offset is bound.
    "sqlite": "date(opens_at, :tz_shift, '-6 days', 'weekday 1')",
    "postgresql": "CAST(date_trunc('week', opens_at AT TIME ZONE :tz) AS date)",
}
_TAGS = {
    "sqlite": "JOIN json_each(s.tags) t",
    "postgresql": "CROSS JOIN LATERAL json_array_elements_text(s.tags) AS t(value)",
}
_JSON_AGG = {"sqlite": "json_group_array", "postgresql": "array_agg"}
_ROUND_FILTER = "\n      AND r.id = :round_id"


def _dialect(name: str) -> str:
    return "postgresql" if name.startswith("postgres") else "sqlite"


def render(query: Query, dialect: str, *, single_round: bool = False) -> str:
    dialect = _dialect(dialect)
    return query.template.format(
        round_filter=_ROUND_FILTER if single_round else "",
        week=_WEEK[dialect], tags_join=_TAGS[dialect], json_agg=_JSON_AGG[dialect],
        folded_sums=_FOLDED_SUMS[dialect])


def markdown() -> str:
    """docs/reports-sql.md, generated from the texts above."""
    out = [
        "# Report SQL — one query per table",
        "",
        "Generated by `python -m bot.reports.queries > docs/reports-sql.md`; the report code runs",
        "exactly these texts (a test keeps this file in step). Every figure of a report is one of",
        "these rows; Python only reshapes them and runs scipy on them.",
        "",
        "How to reproduce a table by hand, in `sqlite3` or `psql`: bind the parameters, fill the",
        "working set (below: drop, create and fill its temporary tables in order, in one session:",
        "`report_folded` and the `_folded` fills only when the report uses the folded rounds,",
        "`report_item_count` instead of `report_answer` when `coverage` holds), then",
        "run the table's query in the same session. Timestamps are UTC; on SQLite they are stored",
        "as text `YYYY-MM-DD HH:MM:SS.ffffff`, so bind `:start` / `:end` in that form (e.g.",
        "`2026-10-31 16:00:00.000000` for 1 November in Asia/Shanghai).",
        "",
        "A report fills the working set once for its scope and period and runs every table on it;",
        "the comparison with the previous period (`previous`) and a branch's rank among its",
        "siblings (`siblings`, with the parent as the scope) read the answer tally directly instead.",
        "",
        "Why this shape: with a million answers, a dozen queries that each re-derived the scope's",
        "valid answers from the answer table made a 党委 report take 12–17 s (docs/benchmarks.md,",
        "section 3). Now a report reads the answers once, and only for the per-item tables; its",
        "member-level figures come from the answer tally, one row per member and round instead of",
        "five answers and a delivery. The tally is derived data: the query in its section compares",
        "it with the answers and deliveries it is made from.",
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
        "small table with one row per member and round that was pushed or answered, instead of from",
        "every answer and delivery. It is, at every commit, exactly this aggregate:",
        "",
        "```sql",
        tally.DEFINITION,
        "```",
        "",
        "The answer path adds each newly stored answer to its row in the same transaction",
        "(`bot.reports.tally.count_answer`; a replayed answer stores nothing and counts nothing);",
        "opening a round marks its deliveries' rows (`count_deliveries`, one statement); bulk loaders",
        "recount the rounds they wrote (`recount`); migrations `0005_answer_tally` and",
        "`0006_tally_pushed` backfilled it. It does not depend on an item's status, so retiring an",
        "item later changes no stored row: the working set subtracts the on-time answers to retired",
        "items (CTE `retired`, read from the answers by the `(round_id, item_id)` index). To check it",
        "(no row means it is right):",
        "",
        "```sql",
        tally.MISMATCHES,
        "```",
        "",
    ]
    out += [
        "## Folded rounds (`topicreach`, `roundmarks`)",
        "",
        "A finished round's on-time answers never change (after its deadline every answer is late),",
        "so `bot.reports.fold.fold_finished_rounds` folds each finished round once — a few per",
        "scheduler tick, one transaction per round, and at the end of `dev seed` — into two small",
        "tables, listing it in `foldedround`:",
        "",
        "- `topicreach`: per topic and member, the opening time of the latest folded round in which",
        "  the member answered the topic validly. For a period that reaches the present, a member",
        "  reached a topic in it exactly when that time is inside it (`topics_reached`).",
        "- `roundmarks`: the round's item-analysis input (`round_marks`' rows) over every member,",
        "  which is the scope's when the scope holds every answer (`round_marks_folded`).",
        "- `roundorgtotals`: the round's member-rounds summed per organisation of the members",
        "  (`fill_round_totals_folded`).",
        "- `memberprefix`: per member, running totals over the folded rounds in opening order, one",
        "  row per folded member-round (`fill_member_totals_folded`: a period's sums are the",
        "  difference of two rows). Rounds are therefore folded strictly in the order they opened.",
        "",
        "The last two hold on-time figures only; late answers, which may come after the fold, are",
        "read from the tally. Folds are made with the item-topic links and retired items of their",
        "time; the fingerprint of those (sha256, `keyvalue` key `reports.folded_rounds`) is stored",
        "with them, and a trigger on `member.org_id` deletes it when a member moves. A report uses",
        "the folds only while it matches (and is made again without them if it changes while the",
        "report runs), and the next fold starts over. One round's folds (PostgreSQL writes",
        "`GREATEST` for `MAX`):",
        "",
        "```sql",
        fold.reach_statement("sqlite") + ";",
        "",
        fold.MARKS_FOLD + ";",
        "",
        fold.ORG_FOLD + ";",
        "",
        fold.PREFIX_FOLD + ";",
        "```",
        "",
    ]
    out += ["## The working set", "",
            "On PostgreSQL one statement drops all its tables (`DROP TABLE IF EXISTS "
            + ", ".join(f"pg_temp.{w.name}" for w in WORKING_SET) + ";`, a round trip",
            "each otherwise), and the tables filled are analysed together after the last fill (e.g.",
            "`ANALYZE report_member_round, report_round, report_member, report_answer;`): temporary tables get",
            "no statistics otherwise, and the planner's guesses for them (13 rows for 300,000) chose nested loops",
            "that took a minute. `coverage` runs between the fills; it only sums report_round.", ""]
    for w in WORKING_SET:
        drop, create = w.ddl("sqlite")
        out += [f"### `{w.name}` — {w.fill.title}", "", w.fill.notes, "", "```sql", drop + ";", create + ";",
                render(w.fill, "sqlite") + ";", "```", ""]
        if w.sqlite_key:
            out += ["On PostgreSQL the table has no key (PostgreSQL groups by hashing).", ""]
        if w.folded_fill:
            out += [f"#### `{w.folded_fill.name}` — {w.folded_fill.title}", "", w.folded_fill.notes, "",
                    "```sql", render(w.folded_fill, "sqlite") + ";", "```", ""]
            out += _postgresql_lines(w.folded_fill)
    out += ["## The report tables", ""]
    for q in ALL:
        out += [f"### `{q.name}` — {q.title}", "", q.notes, "", "```sql", render(q, "sqlite"), "```", ""]
        out += _postgresql_lines(q)
    return "\n".join(out).rstrip() + "\n"


def _postgresql_lines(q: Query) -> list[str]:
    """The lines of a query that read otherwise on PostgreSQL, for the documentation."""
    pg, lite = render(q, "postgresql"), render(q, "sqlite")
    if pg == lite:
        return []
    diff = [line for line in pg.splitlines() if line not in lite.splitlines()]
    return ["On PostgreSQL the dialect-specific lines read:", "", "```sql", *diff, "```", ""]


if __name__ == "__main__":  # pragma: no cover - documentation generator
    print(markdown(), end="")
