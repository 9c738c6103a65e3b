"""GIFT, the plain-text Moodle format. Metadata rides in a `// qf:` JSON comment above each question."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from question_bank.formats.common import ImportError_, validate_records
from question_bank.loader import Problem, Vocabulary
from question_bank.schema import LETTERS, Item, ItemType

_SPECIAL = re.compile(r"([~=#{}:\\])")
_FRACTIONS = {1: "100", 2: "50", 3: "33.33333", 4: "25", 5: "20", 6: "16.66667", 7: "14.28571", 8: "12.5"}


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text).replace("\n", "\\n")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text).strip()


def export_gift(items: list[Item], path: Path, vocabulary: Vocabulary) -> None:
    out = ["// 清风题库 GIFT 导出；// qf: 行保存题号、主题、依据、难度与复核信息，请勿删除。", ""]
    current = None
    for item in items:
        if item.topics[0] != current:
            current = item.topics[0]
            out += [f"$CATEGORY: $course$/top/清风题库/{vocabulary.topics.get(current, current)}", ""]
        meta: dict[str, Any] = {"topics": list(item.topics), "difficulty": item.difficulty,
                                "scenario": item.scenario, "status": item.status.value,
                                "source": item.source.model_dump(exclude_none=True)}
        if item.review:
            meta["review"] = item.review.model_dump(mode="json", exclude_none=True)
        out.append("// qf: " + json.dumps(meta, ensure_ascii=False))
        feedback = f"####{escape(item.explanation)}"
        if item.type is ItemType.judge:
            body = f"{{{'T' if item.answer == 'A' else 'F'}{feedback}}}"
        elif item.type is ItemType.single:
            opts = " ".join(("=" if letter == item.answer else "~") + escape(text)
                            for letter, text in item.lettered_options())
            body = f"{{{opts} {feedback}}}"
        else:
            share = _FRACTIONS[len(item.answer)]
            opts = " ".join(f"~%{share if letter in item.answer else '-100'}%{escape(text)}"
                            for letter, text in item.lettered_options())
            body = f"{{{opts} {feedback}}}"
        out += [f"::{item.id}::{escape(item.stem)}{body}", ""]
    path.write_text("\n".join(out), encoding="utf-8")


_QUESTION = re.compile(r"^::(?P<id>(?:[^:\\]|\\.)+)::(?P<stem>(?:[^{\\]|\\.)*)\{(?P<body>(?:[^}\\]|\\.)*)\}\s*$")
_TOKEN = re.compile(r"([~=])((?:%-?[\d.]+%)?)((?:[^~=#\\]|\\.)*)")


def _parse(block: str, meta: dict[str, Any]) -> dict[str, Any]:
    m = _QUESTION.match(block)
    if not m:
        raise ValueError("无法解析的 GIFT 题目（应为 ::题号::题干{答案}）")
    body, _, feedback = m.group("body").partition("####")
    record: dict[str, Any] = {"id": unescape(m.group("id")), "stem": unescape(m.group("stem")),
                              "explanation": unescape(feedback)}
    body = body.strip()
    if body in ("T", "TRUE", "F", "FALSE"):
        record["type"], record["answer"] = "judge", body.startswith("T")
    else:
        options, keys, weighted = [], [], False
        for mark, weight, text in _TOKEN.findall(body):
            if not text.strip():
                continue
            options.append(unescape(text))
            value = float(weight.strip("%")) if weight else (100.0 if mark == "=" else 0.0)
            weighted = weighted or bool(weight)
            if value > 0:
                keys.append(LETTERS[len(options) - 1])
        record["options"] = options
        record["type"] = "multiple" if weighted else "single"
        record["answer"] = keys if weighted else (keys[0] if len(keys) == 1 else keys)
    record.update({k: v for k, v in meta.items() if k in ("topics", "difficulty", "scenario", "status",
                                                          "source", "review")})
    return record


def import_gift(path: Path, vocabulary: Vocabulary) -> list[Item]:
    records, problems = [], []
    meta: dict[str, Any] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("// qf:"):
            try:
                meta = json.loads(stripped[len("// qf:"):])
            except json.JSONDecodeError as exc:
                problems.append(Problem(path.name, line_no, "", f"qf 元数据不是合法 JSON：{exc.msg}"))
            continue
        if not stripped or stripped.startswith(("//", "$CATEGORY")):
            continue
        try:
            records.append((line_no, _parse(stripped, meta)))
        except ValueError as exc:
            problems.append(Problem(path.name, line_no, "", str(exc)))
        meta = {}
    if problems:
        raise ImportError_(problems)
    return validate_records(records, file=path.name, vocabulary=vocabulary)
