"""open_bank: the bank as read at opening, parsed on first use — the same bank and the same
problems as load_bank, whatever happens to the files afterwards."""

from __future__ import annotations

import shutil

import pytest

from question_bank import BankError, load_bank, open_bank
from tests.conftest import TEST_BANK
from tests.question_bank.test_loader import REPO_BANK, make_bank


@pytest.mark.parametrize("root", [TEST_BANK, REPO_BANK], ids=["test bank", "shipped bank"])
def test_open_bank_is_load_bank_parsed_on_first_use(root):
    opened = open_bank(root)
    assert "items" not in vars(opened)  # nothing parsed yet
    loaded = load_bank(root)
    assert opened.fingerprint == loaded.fingerprint and opened.vocabulary == loaded.vocabulary
    assert opened.items == loaded.items and opened.cases == loaded.cases and opened.origins == loaded.origins


def test_problems_come_on_first_use_and_match_load_bank(tmp_path):
    root = make_bank(tmp_path, "items:\n  - id: bad-001\n    type: single\n    stem: 题干\n")
    with pytest.raises(BankError) as loaded:
        load_bank(root)
    opened = open_bank(root)
    with pytest.raises(BankError) as first:
        opened.items  # noqa: B018
    assert [str(p) for p in first.value.problems] == [str(p) for p in loaded.value.problems]
    with pytest.raises(BankError):
        opened.cases  # noqa: B018  (still invalid, still raising)


def test_missing_vocabulary_fails_at_opening(tmp_path):
    root = tmp_path / "bank"
    shutil.copytree(TEST_BANK, root)
    (root / "vocabulary.yaml").unlink()
    with pytest.raises(BankError):
        open_bank(root)


def test_files_changed_after_opening_do_not_change_the_bank(tmp_path):
    root = tmp_path / "bank"
    shutil.copytree(TEST_BANK, root)
    before = load_bank(root)
    opened = open_bank(root)
    for path in (root / "items").glob("*.yaml"):
        path.write_text("items: [", "utf-8")  # broken after opening
    assert opened.items == before.items and opened.fingerprint == before.fingerprint


def test_fingerprint_follows_every_file(tmp_path):
    root = tmp_path / "bank"
    shutil.copytree(TEST_BANK, root)
    seen = {open_bank(root).fingerprint}
    for path in [root / "vocabulary.yaml", root / "items" / "sample.yaml", root / "cases" / "sample.yaml"]:
        path.write_bytes(path.read_bytes() + b"\n# edited\n")
        seen.add(open_bank(root).fingerprint)
    (root / "items" / "sample.yaml").rename(root / "items" / "renamed.yaml")
    seen.add(open_bank(root).fingerprint)
    assert len(seen) == 5
