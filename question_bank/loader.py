"""Load the YAML bank: safe YAML only, every problem reported as file:line [id], all or nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import ValidationError

from question_bank.schema import Case, Item, Status

MAX_FILE_BYTES = 2 * 1024 * 1024  # a topic file is a few hundred KB at most
VOCABULARY_FILE = "vocabulary.yaml"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    item_id: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} [{self.item_id}] {self.message}" if self.item_id else f"{where} {self.message}"


class BankError(Exception):
    """The bank is invalid; `problems` lists every problem found (nothing was loaded)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Vocabulary:
    topics: dict[str, str]
    case_categories: dict[str, list[str]]

    @property
    def categories(self) -> set[str]:
        return {c for group in self.case_categories.values() for c in group}


@dataclass
class Bank:
    items: dict[str, Item]
    cases: dict[str, Case]
    vocabulary: Vocabulary
    # Where each entry came from, for error messages of later checks.
    origins: dict[str, tuple[str, int]] = field(default_factory=dict)
    # sha256 of the files read and of the code that read them ("" for a bank built by hand):
    # the same fingerprint means the same items, so a start can skip re-syncing them.
    fingerprint: str = ""

    def approved_items(self, *, include_drafts: bool = False) -> list[Item]:
        wanted = {Status.approved, Status.draft} if include_drafts else {Status.approved}
        return [i for i in self.items.values() if i.status in wanted]

    def topic_name(self, topic: str) -> str:
        return self.vocabulary.topics.get(topic, topic)


# --- safe YAML with line numbers -----------------------------------------------------------


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster


_STR = "tag:yaml.org,2002:str"
_PLAIN_SCALARS = frozenset({_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                            "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"})
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Irregular(Exception):
    """Not a plain document: let PyYAML's constructor build it (or raise what it raises)."""


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that records the line of every mapping and refuses anchors/aliases.

    Aliases are how "billion laughs" bombs multiply and a bank never needs them: the composer
    shares an aliased node, so meeting a node a second time during construction means an alias.

    A bank file is plain mappings, lists and scalars; those are built by one direct walk over the
    nodes (PyYAML's general constructor costs several calls per node, most of a bank's load
    time). Anything else — an alias, a merge key, an explicit or unknown tag, an error — goes
    through the general path below, so results and error messages are the same either way.
    """

    def construct_document(self, node: Any) -> Any:
        try:
            return self._plain(node, set())
        except Exception:  # _Irregular, or an error the general path will report properly
            return super().construct_document(node)

    def _plain(self, node: Any, seen: set[Any]) -> Any:
        if node in seen:
            raise _Irregular
        seen.add(node)
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag == _STR:
                return node.value
            if tag in _PLAIN_SCALARS:
                return self.yaml_constructors[tag](self, node)
        elif isinstance(node, yaml.SequenceNode) and tag == _SEQ:
            return [self._plain(child, seen) for child in node.value]
        elif isinstance(node, yaml.MappingNode) and tag == _MAP:
            mapping: dict[Any, Any] = {}
            keys: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_SCALARS:
                    raise _Irregular  # e.g. a merge key (<<) or a collection as a key
                key = self._plain(key_node, seen)
                mapping[key] = self._plain(value_node, seen)
                keys[str(key_node.value)] = key_node.start_mark.line + 1
            mapping["__line__"] = node.start_mark.line + 1
            mapping["__keys__"] = keys
            return mapping
        raise _Irregular

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "不允许使用 YAML 锚点与别名（&anchor / *alias）", node.start_mark)
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        mapping = super().construct_mapping(node, deep=deep)
        keys = {str(k.value): k.start_mark.line + 1 for k, _v in node.value if isinstance(k, yaml.ScalarNode)}
        mapping["__line__"] = node.start_mark.line + 1
        mapping["__keys__"] = keys
        return mapping


def _read_file(path: Path) -> bytes | int:
    """The file's bytes, or its size when it is too large to read."""
    size = path.stat().st_size
    return size if size > MAX_FILE_BYTES else path.read_bytes()


def _parse_yaml(raw: bytes | int, display: str) -> tuple[Any, list[Problem]]:
    if isinstance(raw, int):
        return None, [Problem(display, 0, "", f"文件过大（{raw} 字节，上限 {MAX_FILE_BYTES}）")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [Problem(display, 0, "", f"不是 UTF-8 编码（第 {exc.start} 字节）")]
    try:
        return yaml.load(text, Loader=_LineLoader), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        return None, [Problem(display, line, "", f"YAML 语法错误：{exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [Problem(display, 0, "", f"YAML 错误：{exc}")]


def _read_yaml(path: Path, display: str) -> tuple[Any, list[Problem]]:
    return _parse_yaml(_read_file(path), display)


def _strip_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_marks(v) for k, v in value.items() if k not in ("__line__", "__keys__")}
    if isinstance(value, list):
        return [_strip_marks(v) for v in value]
    return value


def _entries(doc: Any, key: str, display: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        return [], [Problem(display, 1, "", f"顶层应为 `{key}:` 列表")]
    entries, problems = [], []
    for entry in doc[key]:
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            problems.append(Problem(display, 0, "", f"`{key}` 中有一项不是映射：{entry!r}"[:120]))
    return entries, problems


def _validation_problems(
    exc: ValidationError, entry: dict[str, Any], display: str, entry_id: str
) -> Iterator[Problem]:
    keys = entry.get("__keys__", {})
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        line = keys.get(loc[0], entry["__line__"]) if loc else entry["__line__"]
        where = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        yield Problem(display, line, entry_id, f"{where}: {msg}" if where else msg)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def load_vocabulary(root: Path) -> Vocabulary:
    path = root / VOCABULARY_FILE
    display = _display(path, root)
    if not path.is_file():
        raise BankError([Problem(display, 0, "", "缺少词表文件 vocabulary.yaml")])
    doc, problems = _read_yaml(path, display)
    if problems:
        raise BankError(problems)
    doc = _strip_marks(doc)
    try:
        topics = {str(k): str(v) for k, v in doc["topics"].items()}
        categories = {str(k): [str(c) for c in v] for k, v in doc["case_categories"].items()}
    except (KeyError, TypeError, AttributeError):
        raise BankError([Problem(display, 1, "", "应包含 topics 与 case_categories")]) from None
    return Vocabulary(topics, categories)


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


_CODE = [Path(__file__), Path(__file__).with_name("schema.py")]


@dataclass(frozen=True)
class _Source:
    """A bank's files as read at one moment: what is parsed, and what the fingerprint covers."""

    root: Path
    vocabulary: Vocabulary
    files: list[tuple[str, str, bytes | int]]  # ("items" | "cases", display name, bytes or oversize)
    fingerprint: str


def _read_source(root: Path, extra_files: Iterable[Path]) -> _Source:
    vocabulary = load_vocabulary(root)
    files = [(key, _display(path, root), _read_file(path))
             for key, paths in (("items", [*_yaml_files(root / "items"), *extra_files]),
                                ("cases", _yaml_files(root / "cases")))
             for path in paths]
    # sha256 over the files' names and bytes, this loader's and the schema's source, and the
    # versions of the libraries that parse and validate them.
    h = hashlib.sha256(f"pydantic {pydantic.VERSION}; pyyaml {yaml.__version__}".encode())
    named = [(p.name, p.read_bytes()) for p in _CODE]
    named.append((VOCABULARY_FILE, (root / VOCABULARY_FILE).read_bytes()))
    named += [(f"{key}/{display}", raw) for key, display, raw in files]
    for name, raw in named:
        data = raw if isinstance(raw, bytes) else f"oversize {raw}".encode()
        h.update(f"\0{name}\0{len(data)}\0".encode())
        h.update(data)
    return _Source(root, vocabulary, files, h.hexdigest())


def _parse(source: _Source) -> Bank:
    vocabulary = source.vocabulary
    problems: list[Problem] = []
    found: dict[str, dict[str, Any]] = {"items": {}, "cases": {}}
    models: dict[str, type[Item] | type[Case]] = {"items": Item, "cases": Case}
    origins: dict[str, tuple[str, int]] = {}
    for key, display, raw in source.files:
        doc, file_problems = _parse_yaml(raw, display)
        problems.extend(file_problems)
        if file_problems:
            continue
        entries, entry_problems = _entries(doc, key, display)
        problems.extend(entry_problems)
        for entry in entries:
            entry_id = str(entry.get("id", "?"))
            line = entry["__line__"]
            if entry_id in origins:
                first = origins[entry_id]
                problems.append(Problem(display, line, entry_id,
                                        f"id 重复（首次出现于 {first[0]}:{first[1]}）"))
                continue
            try:
                obj = models[key].model_validate(_strip_marks(entry))
            except ValidationError as exc:
                problems.extend(_validation_problems(exc, entry, display, entry_id))
                continue
            origins[entry_id] = (display, line)
            problems.extend(_vocabulary_problems(obj, vocabulary, display, entry))
            found[key][obj.id] = obj
    if problems:
        raise BankError(problems)
    return Bank(items=found["items"], cases=found["cases"], vocabulary=vocabulary, origins=origins,
                fingerprint=source.fingerprint)


def load_bank(root: str | Path, *, extra_files: Iterable[Path] = ()) -> Bank:
    """Load and validate `root/items/*.yaml` and `root/cases/*.yaml`; raise BankError on any problem."""
    return _parse(_read_source(Path(root), extra_files))


class _LazyBank(Bank):
    """A bank whose items and cases are parsed from the bytes read at opening, on first use."""

    def __init__(self, source: _Source) -> None:  # items, cases and origins: see __getattr__
        self.vocabulary = source.vocabulary
        self.fingerprint = source.fingerprint
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name not in ("items", "cases", "origins"):
            raise AttributeError(name)
        bank = _parse(self._source)  # raises BankError as load_bank does
        self.items, self.cases, self.origins = bank.items, bank.cases, bank.origins
        return getattr(self, name)


def open_bank(root: str | Path) -> Bank:
    """The bank under `root`, read now (vocabulary checked, fingerprint taken) and parsed on first
    use of its items, cases or origins; invalid files raise BankError then, as `load_bank` would.
    For a start whose bank sync compares fingerprints: an unchanged bank is never parsed."""
    return _LazyBank(_read_source(Path(root), ()))


def _vocabulary_problems(obj: Item | Case, vocabulary: Vocabulary, display: str,
                         entry: dict[str, Any]) -> Iterator[Problem]:
    keys = entry.get("__keys__", {})
    unknown = [t for t in obj.topics if t not in vocabulary.topics]
    if unknown:
        yield Problem(display, keys.get("topics", entry["__line__"]), obj.id,
                      f"topics: 未知主题 {', '.join(unknown)}（见 vocabulary.yaml）")
    if isinstance(obj, Case) and obj.category not in vocabulary.categories:
        yield Problem(display, keys.get("category", entry["__line__"]), obj.id,
                      f"category: 未知类别 {obj.category!r}（见 vocabulary.yaml case_categories）")
