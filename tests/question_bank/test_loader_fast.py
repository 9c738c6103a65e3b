"""The loader's direct walk over plain YAML gives exactly what PyYAML's general constructor
gives (same data, same line marks), and hands everything else to it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from question_bank import loader

ROOT = Path(__file__).resolve().parents[2]


class GeneralOnly(loader._LineLoader):  # type: ignore[misc, valid-type]
    """The loader without the direct walk: what the bank was read with before."""

    def construct_document(self, node):  # type: ignore[no-untyped-def]
        return yaml.constructor.BaseConstructor.construct_document(self, node)


def both(text: str) -> tuple[object, object]:
    def load(cls: type) -> object:
        try:
            return yaml.load(text, Loader=cls)
        except Exception as exc:  # the same error either way counts as the same result
            return (type(exc).__name__, str(exc))

    return load(loader._LineLoader), load(GeneralOnly)


BANK_FILES = sorted(p for d in (ROOT / "question_bank", ROOT / "tests" / "fixtures" / "bank")
                    for p in d.rglob("*.yaml"))


@pytest.mark.parametrize("path", BANK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bank_files_read_the_same(path):
    text = path.read_text("utf-8-sig")
    fast, general = both(text)
    assert fast == general
    assert not isinstance(fast, tuple)
    reader = loader._LineLoader(text)
    try:
        reader._plain(reader.get_single_node(), set())  # the direct walk takes it: no fallback
    finally:
        reader.dispose()


CASES = {
    "scalars": "a: 1\nb: 0x1F\nc: 1_000\nd: 1:20\ne: .inf\nf: yes\ng: ~\nh: 2026-11-25\ni: 2026-11-25 10:00:00+08:00\n"
               "j: '1'\nk: \"x\\ty\"\nl: 3.5e2\nm: Off\n",
    "nesting": "items:\n  - id: a\n    options: [x, y, {z: 1}]\n    review: {reviewer: r, date: 2026-01-02}\n"
               "  - [1, [2, [3]]]\n",
    "int and date keys": "1: one\n2026-01-01: day\nnull: n\ntrue: t\n",
    "duplicate keys": "a: 1\na: 2\nb: {c: 1, c: 2}\n",
    "marks as keys": "__line__: 5\n__keys__: x\n",
    "block scalars": "stem: |\n  第一行\n  第二行\nexp: >\n  折叠\n  文本\n",
    "merge key": "base: {a: 1}\nm:\n  <<: {b: 2}\n  c: 3\n",
    "value key": "=: v\nx: 1\n",
    "alias": "a: &x [1, 2]\nb: *x\n",
    "two aliases": "a: &x 1\nb: &y 2\nc: *y\nd: *x\n",
    "explicit tags": "a: !!str 1\nb: !!int '2'\nc: !!binary aGk=\nd: !!set {x, y}\n",
    "unknown tag": "a: !custom 1\n",
    "collection key": "? [1, 2]\n: v\n",
    "bad date": "d: 2026-13-45\n",
    "empty": "",
    "scalar document": "just text\n",
    "deep nesting": "a: " + "[" * 2000 + "]" * 2000 + "\n",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_documents_read_the_same(text):
    fast, general = both(text)
    assert fast == general
    assert repr(fast) == repr(general)  # the same types too (1 vs True vs 1.0, date vs str)
