"""Moodle XML, lossless: topics as categories (+ tags), explanation as general feedback,
our metadata (id, source, difficulty, status, review) as idnumber and `qf:` tags."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from question_bank.formats.common import ImportError_, validate_records
from question_bank.loader import Problem, Vocabulary
from question_bank.schema import LETTERS, Item, ItemType

# Moodle accepts only these fractions; 100/k for k correct options.
_FRACTIONS = {1: "100", 2: "50", 3: "33.33333", 4: "25", 5: "20", 6: "16.66667", 7: "14.28571", 8: "12.5"}
TAG = "qf:"


def _text_el(parent: ET.Element, tag: str, text: str, fmt: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag, {"format": fmt} if fmt else {})
    ET.SubElement(el, "text").text = text
    return el


def _tags(item: Item) -> list[str]:
    tags = [f"{TAG}topic={t}" for t in item.topics]
    tags += [f"{TAG}difficulty={item.difficulty}", f"{TAG}scenario={int(item.scenario)}",
             f"{TAG}status={item.status.value}", f"{TAG}source={item.source.document}"]
    if item.source.article:
        tags.append(f"{TAG}article={item.source.article}")
    if item.review:
        tags += [f"{TAG}reviewer={item.review.reviewer}", f"{TAG}reviewed={item.review.date.isoformat()}"]
        if item.review.note:
            tags.append(f"{TAG}review_note={item.review.note}")
    return tags


def export_moodle(items: list[Item], path: Path, vocabulary: Vocabulary) -> None:
    quiz = ET.Element("quiz")
    current = None
    for item in sorted(items, key=lambda i: (list(vocabulary.topics).index(i.topics[0])
                                             if i.topics[0] in vocabulary.topics else 99, i.id)):
        if item.topics[0] != current:
            current = item.topics[0]
            cat = ET.SubElement(quiz, "question", {"type": "category"})
            _text_el(cat, "category", f"$course$/top/清风题库/{vocabulary.topics.get(current, current)}")
        kind = "truefalse" if item.type is ItemType.judge else "multichoice"
        q = ET.SubElement(quiz, "question", {"type": kind})
        _text_el(q, "name", item.id)
        _text_el(q, "questiontext", item.stem, "plain_text")
        _text_el(q, "generalfeedback", item.explanation, "plain_text")
        ET.SubElement(q, "defaultgrade").text = "1"
        ET.SubElement(q, "idnumber").text = item.id
        if item.type is ItemType.judge:
            for value, letter in (("true", "A"), ("false", "B")):
                ans = ET.SubElement(q, "answer", {"fraction": "100" if item.answer == letter else "0",
                                                  "format": "moodle_auto_format"})
                ET.SubElement(ans, "text").text = value
        else:
            ET.SubElement(q, "single").text = "true" if item.type is ItemType.single else "false"
            ET.SubElement(q, "shuffleanswers").text = "false"
            ET.SubElement(q, "answernumbering").text = "ABCD"
            for letter, text in item.lettered_options():
                right = letter in item.answer
                fraction = _FRACTIONS[len(item.answer)] if right else ("0" if item.type is ItemType.single else "-100")
                ans = ET.SubElement(q, "answer", {"fraction": fraction, "format": "plain_text"})
                ET.SubElement(ans, "text").text = text
        tags = ET.SubElement(q, "tags")
        for t in _tags(item):
            _text_el(tags, "tag", t)
    ET.indent(quiz)
    path.write_bytes(ET.tostring(quiz, encoding="utf-8", xml_declaration=True))


def _child_text(el: ET.Element, tag: str) -> str:
    found = el.find(f"{tag}/text")
    return (found.text or "").strip() if found is not None else ""


def _record(q: ET.Element) -> dict[str, Any]:
    meta: dict[str, list[str]] = {}
    for tag in q.findall("tags/tag/text"):
        text = tag.text or ""
        if text.startswith(TAG) and "=" in text:
            key, _, value = text[len(TAG):].partition("=")
            meta.setdefault(key, []).append(value)
    first = lambda k, d=None: meta.get(k, [d])[0]  # noqa: E731
    idnumber = q.findtext("idnumber") or _child_text(q, "name")
    record: dict[str, Any] = {"id": idnumber.strip(), "stem": _child_text(q, "questiontext"),
                              "explanation": _child_text(q, "generalfeedback")}
    answers = q.findall("answer")
    if q.get("type") == "truefalse":
        record["type"] = "judge"
        right = [(a.findtext("text") or "").strip() for a in answers if float(a.get("fraction", "0")) > 0]
        record["answer"] = right == ["true"]
    else:
        single = (q.findtext("single") or "true").strip() == "true"
        record["type"] = "single" if single else "multiple"
        record["options"] = [(a.findtext("text") or "").strip() for a in answers]
        keys = [LETTERS[i] for i, a in enumerate(answers) if float(a.get("fraction", "0")) > 0]
        record["answer"] = keys[0] if single and len(keys) == 1 else keys
    record["source"] = {"document": first("source", "")}
    if first("article"):
        record["source"]["article"] = first("article")
    record["topics"] = meta.get("topic", [])
    record["difficulty"] = int(first("difficulty", "2"))
    record["scenario"] = first("scenario", "0") == "1"
    record["status"] = first("status", "draft")
    if first("reviewer"):
        record["review"] = {"reviewer": first("reviewer"), "date": first("reviewed")}
        if first("review_note"):
            record["review"]["note"] = first("review_note")
    return record


def import_moodle(path: Path, vocabulary: Vocabulary) -> list[Item]:
    # ElementTree does not expand external entities; Moodle files never need a DTD anyway.
    text = path.read_text(encoding="utf-8")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ImportError_([Problem(path.name, 0, "", "不接受含 DOCTYPE/ENTITY 的 XML")])
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ImportError_([Problem(path.name, exc.position[0], "", f"XML 格式错误：{exc}")]) from None
    records = []
    lines = {id(q): n for n, q in enumerate(root.iter("question"), start=1)}
    for q in root.iter("question"):
        if q.get("type") in ("truefalse", "multichoice"):
            records.append((lines[id(q)], _record(q)))
        elif q.get("type") != "category":
            records.append((lines[id(q)], {"id": _child_text(q, "name") or "?", "type": q.get("type")}))
    return validate_records(records, file=path.name, vocabulary=vocabulary)
