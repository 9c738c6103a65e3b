"""Shared pieces: the canonical YAML form of an item, and validation of imported records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import ValidationError

from question_bank.loader import BankError, Problem, Vocabulary
from question_bank.schema import Item, ItemType

TYPE_NAMES = {"single": "单选", "multiple": "多选", "judge": "判断"}
TYPE_BY_NAME = {**{v: k for k, v in TYPE_NAMES.items()}, **{k: k for k in TYPE_NAMES},
                "单选题": "single", "多选题": "multiple", "判断题": "judge"}


class ImportError_(BankError):
    """An import file is invalid; every problem names the file and row/line (nothing written)."""


def item_to_yaml_dict(item: Item) -> dict[str, Any]:
    """The item exactly as FORMAT.md writes it (judge: answer true/false, no options)."""
    d: dict[str, Any] = {"id": item.id, "type": item.type.value, "stem": item.stem}
    if item.type is ItemType.judge:
        d["answer"] = item.answer == "A"
    else:
        d["options"] = list(item.options)
        d["answer"] = item.answer if item.type is ItemType.single else list(item.answer)
    d["explanation"] = item.explanation
    d["source"] = {"document": item.source.document}
    if item.source.article:
        d["source"]["article"] = item.source.article
    d["topics"] = list(item.topics)
    d["difficulty"] = item.difficulty
    d["scenario"] = item.scenario
    d["status"] = item.status.value
    if item.review:
        d["review"] = {"reviewer": item.review.reviewer, "date": item.review.date}
        if item.review.note:
            d["review"]["note"] = item.review.note
    return d


class _NoAliasDumper(yaml.SafeDumper):
    """The loader refuses anchors/aliases, so never write them (PyYAML anchors shared dates)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(body: Any) -> str:
    return yaml.dump(body, Dumper=_NoAliasDumper, allow_unicode=True, sort_keys=False, width=1000)


def items_to_yaml(items: Iterable[Item]) -> str:
    return dump_yaml({"items": [item_to_yaml_dict(i) for i in items]})


def validate_records(records: list[tuple[int, dict[str, Any]]], *, file: str,
                     vocabulary: Vocabulary) -> list[Item]:
    """Validate (line, record) pairs all-or-nothing; raise ImportError_ listing every problem."""
    problems: list[Problem] = []
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, record in records:
        item_id = str(record.get("id") or "?")
        if item_id in seen:
            problems.append(Problem(file, line, item_id, f"id 重复（首次出现在第 {seen[item_id]} 行）"))
            continue
        seen[item_id] = line
        try:
            item = Item.model_validate(record)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(Problem(file, line, item_id, f"{where}: {msg}" if where else msg))
            continue
        unknown = [t for t in item.topics if t not in vocabulary.topics]
        if unknown:
            problems.append(Problem(file, line, item_id, f"topics: 未知主题 {', '.join(unknown)}"))
            continue
        items.append(item)
    if problems:
        raise ImportError_(problems)
    return items
