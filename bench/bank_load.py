"""Bank load and validation of 1,000 items (target <= 0.5 s), against a bare libyaml parse of the same files."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from bench.common import ROOT, machine, median_time, table
from question_bank import load_bank
from question_bank.formats.common import dump_yaml, item_to_yaml_dict

TARGET_ITEMS = 1000


def synthetic_bank(workdir: Path) -> Path:
    """The shipped bank, repeated with fresh ids until it holds TARGET_ITEMS items."""
    shipped = load_bank(ROOT / "question_bank")
    root = workdir / "bank"
    (root / "items").mkdir(parents=True)
    shutil.copy(ROOT / "question_bank" / "vocabulary.yaml", root / "vocabulary.yaml")
    items = list(shipped.items.values())
    by_file: dict[str, list[dict]] = {}
    for n in range(TARGET_ITEMS):
        item = items[n % len(items)]
        d = item_to_yaml_dict(item)
        d["id"] = f"{item.id}-x{n // len(items)}"
        by_file.setdefault(item.topics[0], []).append(d)
    for topic, entries in by_file.items():
        (root / "items" / f"{topic}.yaml").write_text(dump_yaml({"items": entries}), "utf-8")
    return root


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_bank(Path(tmp))
        files = sorted((root / "items").glob("*.yaml"))
        baseline = median_time(lambda: [yaml.load(f.read_text("utf-8"), Loader=yaml.CSafeLoader) for f in files])
        full = median_time(lambda: load_bank(root))
        n = len(load_bank(root).items)
    print(f"machine: {machine()}")
    print(table(["what", "items", "median s", "ratio to bare parse"], [
        ["bare libyaml parse", n, f"{baseline:.3f}", "1.00"],
        ["load_bank (parse + lines + validation)", n, f"{full:.3f}", f"{full / baseline:.2f}"],
    ]))
    print(f"target: load_bank of {TARGET_ITEMS} items <= 0.5 s -> {'met' if full <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
