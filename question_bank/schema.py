"""Validated shapes of bank items and case studies (pydantic, strict about content)."""

from __future__ import annotations

import hashlib
import json
import re
import string
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

LETTERS = string.ascii_uppercase[:8]
JUDGE_OPTIONS = ("正确", "错误")

ItemId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
# YAML folded scalars (>-) join lines with a space, which is wrong between Chinese characters.
_CJK = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
# …but keep the answer blank "（  ）" that quiz stems conventionally contain.
_CJK_GAP = re.compile(rf"(?<={_CJK})(?<!（)\s+(?={_CJK})(?!）)")


def _tidy(text: str) -> str:
    return _CJK_GAP.sub("", text.strip())


Text = Annotated[str, AfterValidator(_tidy), StringConstraints(min_length=1)]


class ItemType(StrEnum):
    single = "single"
    multiple = "multiple"
    judge = "judge"


class Status(StrEnum):
    draft = "draft"
    approved = "approved"
    retired = "retired"


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: Text
    article: str | None = None

    def cite(self) -> str:
        return f"{self.document}{self.article}" if self.article else self.document


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: Text
    date: date
    note: str | None = None


class _Reviewed(BaseModel):
    status: Status = Status.draft
    review: Review | None = None

    @model_validator(mode="after")
    def _approved_needs_review(self) -> _Reviewed:
        if self.status is Status.approved and self.review is None:
            raise ValueError("status 为 approved 时必须有 review（reviewer 与 date）")
        return self


def _letters(value: Any) -> list[str]:
    if isinstance(value, str):
        raw = [c for c in value.upper() if not c.isspace() and c not in ",，、"]
    elif isinstance(value, list):
        raw = [str(v).strip().upper() for v in value]
    else:
        raise ValueError("answer 应为字母（如 B）或字母列表（如 [A, C]）")
    return raw


class Item(_Reviewed):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ItemId
    type: ItemType
    stem: Text
    options: list[Text] = Field(default_factory=list)
    answer: str  # sorted letters, e.g. "B" or "ACD" (judge: A = 正确, B = 错误)
    explanation: Text
    source: Source
    topics: list[str] = Field(min_length=1)
    difficulty: Literal[1, 2, 3] = 2
    scenario: bool = False

    @model_validator(mode="before")
    @classmethod
    def _normalise_answer(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "answer" not in data:
            return data
        answer = data["answer"]
        if data.get("type") == "judge":
            if data.get("options"):
                raise ValueError("judge（判断题）不写 options，选项固定为 正确/错误")
            if not isinstance(answer, bool):
                raise ValueError("judge（判断题）的 answer 必须是 true 或 false")
            return {**data, "options": list(JUDGE_OPTIONS), "answer": "A" if answer else "B"}
        if not isinstance(answer, str | list):
            return data  # let field validation report it together with any other problems
        return {**data, "answer": "".join(sorted(_letters(answer)))}

    @model_validator(mode="after")
    def _check_key(self) -> Item:
        n = len(self.options)
        if not 2 <= n <= 8:
            raise ValueError(f"选项数应为 2–8 个，实际 {n} 个")
        if len(set(self.options)) != n:
            raise ValueError("选项重复")
        letters = list(self.answer)
        valid = set(LETTERS[:n])
        bad = [x for x in letters if x not in valid]
        if bad:
            raise ValueError(f"答案 {''.join(bad)} 不在选项 {''.join(sorted(valid))} 之中")
        if len(set(letters)) != len(letters):
            raise ValueError("答案字母重复")
        if self.type is ItemType.single and len(letters) != 1:
            raise ValueError(f"single（单选题）只能有一个答案，实际 {''.join(letters)}")
        if self.type is ItemType.multiple and len(letters) < 2:
            raise ValueError("multiple（多选题）至少要有两个正确答案")
        return self

    def lettered_options(self) -> list[tuple[str, str]]:
        return list(zip(LETTERS, self.options, strict=False))

    def content_hash(self) -> str:
        return _hash(self.model_dump(mode="json", exclude={"status", "review"}))


class Case(_Reviewed):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ItemId
    title: Text
    category: Text
    what_happened: Text
    rule_broken: Text
    consequence: Text
    lesson: Text
    topics: list[str] = Field(min_length=1)
    composite: bool
    source: Text

    @field_validator("source")
    @classmethod
    def _no_notice_numbers(cls, value: str) -> str:
        # A composite case must not look like it quotes a real notice number (〔2024〕12号).
        if re.search(r"〔\d{4}〕\s*\d+\s*号", value):
            raise ValueError("source 含文号；综合案例不得编造文号，真实通报请核实后写入")
        return value

    def content_hash(self) -> str:
        return _hash(self.model_dump(mode="json", exclude={"status", "review"}))


def _hash(data: dict[str, Any]) -> str:
    blob = json.dumps(data, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
