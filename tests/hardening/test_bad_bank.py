"""A corpus of broken bank files: each is rejected with a clear message, with bounded memory."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest

from question_bank import BankError, load_bank
from tests.conftest import FIXTURES, TEST_BANK

CORPUS = FIXTURES / "bad_bank"
EXPECTED = {  # file -> words the message must contain
    "syntax_error.yaml": "YAML 语法错误",
    "wrong_types.yaml": "options",
    "missing_keys.yaml": "stem",
    "gbk_encoding.yaml": "UTF-8",
    "utf16_encoding.yaml": "UTF-8",
    "billion_laughs.yaml": "锚点",
    "merge_key_abuse.yaml": "锚点",
    "python_tag.yaml": "python",
    "python_name_tag.yaml": "python",
    "tab_indent.yaml": "YAML 语法错误",
    "top_level_list.yaml": "顶层应为 `items:` 列表",
    "empty.yaml": "顶层应为 `items:` 列表",
    "items_not_mappings.yaml": "不是映射",
    "bad_id_and_type.yaml": "type",
}


def bank_with(tmp_path: Path, file: Path) -> Path:
    root = tmp_path / "bank"
    (root / "items").mkdir(parents=True)
    shutil.copy(TEST_BANK / "vocabulary.yaml", root / "vocabulary.yaml")
    shutil.copy(TEST_BANK / "items" / "sample.yaml", root / "items" / "sample.yaml")
    shutil.copy(file, root / "items" / file.name)
    return root


def test_corpus_is_complete():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_is_rejected_clearly(tmp_path, name):
    with pytest.raises(BankError) as exc:
        load_bank(bank_with(tmp_path, CORPUS / name))
    messages = [str(p) for p in exc.value.problems]
    assert all(name in m for m in messages), messages  # problems name the broken file only …
    assert any(EXPECTED[name].lower() in m.lower() for m in messages), messages  # … and say why


def test_fifty_megabyte_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "huge.yaml"
    with big.open("wb") as f:
        f.write(b"items:\n")
        f.truncate(50 * 1024 * 1024)
    root = bank_with(tmp_path, big)
    tracemalloc.start()
    try:
        with pytest.raises(BankError, match="文件过大"):
            load_bank(root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024  # the 50 MB file was never read into memory
