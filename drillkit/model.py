"""Typed YAML: turn safely loaded YAML into frozen dataclasses, with located errors.

One converter serves scenarios, fault parameters and policy files, and the same type hints
produce the JSON Schema (`drillkit schema`), so the format has a single definition.
Every error names the file, the line and the key path: `drill.yaml:12: faults[0].count: ...`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from drillkit.errors import ScenarioError

T = TypeVar("T")

# --- value types -------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The longest duration anything may be: no drill, target, deadline or due date runs past a year
# (the longest default, P4's time to resolve, is a week), so anything longer is a typo (or a
# YAML float like 1.0e+308), refused where it is written rather than printed as 10^303 days.
MAX_DURATION = 365 * 86400.0


class DurationMark:
    """Marker for `Annotated[float, DURATION]`: seconds, written `90s`, `5m`, `1h30m`."""

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive


DURATION = DurationMark()
Duration = Annotated[float, DURATION]
# A target or deadline: zero would make the drill fail (or pass) before anything can happen.
PositiveDuration = Annotated[float, DurationMark(positive=True)]


def parse_duration(value: object) -> float:
    """Seconds from `500ms`, `90s`, `5m`, `1h30m`, `2d` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 90s, 5m or 1h30m, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a non-negative finite duration, got {value}")
        seconds = float(value)
    else:
        text = str(value).strip()
        if not text or _DURATION_RE.sub("", text):
            raise ValueError(f"expected a duration like 90s, 5m or 1h30m, got {value!r}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text))
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 365d (a year), got {value!r}")
    return seconds


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|B)?")
_SIZE_UNITS: dict[str | None, int] = {
    None: 1,
    "B": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def parse_bytes(text: str) -> int:
    """Bytes from a size as Kubernetes reads a quantity (`1G` = 10^9, `1Gi` = 2^30, `512Mi`, a
    bare number); fractions round up. The one size parser, local and Kubernetes faults alike."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected a size like 512Mi, 1Gi or 500M, got {text!r}")
    whole, _, frac = str(m[1]).partition(".")
    unit = _SIZE_UNITS[m[2]]
    scale = 10 ** len(frac)
    return int(int(whole) * unit - (-int(frac or "0") * unit // scale))


def format_duration(seconds: float | None) -> str:
    """`1h2m3s`-style text for reports; `-` for an unmeasured value."""
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 60:
        return f"{sign}{s:.2f}s" if s < 10 else f"{sign}{s:.1f}s"
    parts, rest = [], round(s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return sign + "".join(parts)


@dataclass(frozen=True)
class Count:
    """A blast-radius or target count: an absolute number or a percentage of the candidates."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, raw: object) -> Count:
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            return cls(raw)
        text = str(raw).strip()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
            pct = float(m.group(1))
            if 0 < pct <= 100:
                return cls(pct, percent=True)
        raise ValueError(f'expected a positive integer or a percentage like "50%", got {raw!r}')

    def of(self, total: int) -> int:
        """How many of `total` candidates this count allows (at least 1 for a percentage)."""
        if not self.percent:
            return int(self.value)
        return max(1, int(total * self.value / 100)) if total else 0

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


@dataclass(frozen=True)
class Comparator:
    """A PromQL result check such as `>= 3` or `< 0.05`."""

    op: str
    value: float

    OPS: typing.ClassVar[dict[str, typing.Callable[[float, float], bool]]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
    }

    @classmethod
    def parse(cls, raw: object) -> Comparator:
        m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*", str(raw))
        if not m or isinstance(raw, bool):
            raise ValueError(f'expected a comparison like ">= 3" or "< 0.05" (one of >= <= == != > <), got {raw!r}')
        return cls(m.group(1), float(m.group(2)))

    def holds(self, actual: float) -> bool:
        return self.OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


_PARSERS: dict[type, typing.Callable[[object], Any]] = {
    Count: Count.parse,
    Comparator: Comparator.parse,
}
_SCHEMAS: dict[type, dict[str, Any]] = {
    Count: {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
        ]
    },
    Comparator: {"type": "string", "pattern": r"^\s*(>=|<=|==|!=|>|<)\s*-?\d"},
}
_DURATION_SCHEMA = {
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
        {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"},
    ]
}


# --- located YAML --------------------------------------------------------------------------


class LocMap(dict[str, Any]):
    """A YAML mapping that remembers the line of each key."""

    line: int = 0
    key_lines: dict[str, int]


class LocList(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and refuses duplicate keys (pure Python: it has the
    last word on every error, see `load_yaml`)."""


# libyaml's parser with the same safe constructors: its nodes carry `start_mark` too, so line
# numbers survive, at a tenth of the pure-Python scanner's cost. Absent libyaml, the pure loader.
_CBase: Any = getattr(yaml, "CSafeLoader", None)
_FastLoader: Any = type("_FastLoader", (_CBase,), {"__doc__": "CSafeLoader twin of _Loader."}) if _CBase else _Loader


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> LocMap:
    loader.flatten_mapping(node)
    out = LocMap()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Located(line, f"keys must be strings, got {key!r}")
        if key in out:
            raise _Located(line, f"duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> LocList:
    out = LocList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


for _cls in {_Loader, _FastLoader}:
    _cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Located(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


Lookup = typing.Callable[[str], "str | None"]
"""Resolves a variable name (`env.HOME`, `lab.port.proxy`) to its value, None if it is unset;
raises ValueError (its message shown to the user) for a name that is no variable at all."""
SUBSTITUTED = "tag:drillkit.io,2026:substituted"


class Substituted(str):
    """A scalar whose text came (in part) from `${…}` variables. It stays a string; a field
    typed int, float, bool, duration or count parses it (see `_typed`)."""


_REF = re.compile(r"\$(\$?)\{([^{}]*)\}")


def load_yaml(path: Path, variables: Lookup | None = None) -> Any:
    """Safely load one YAML document, keeping line numbers; errors are ScenarioErrors.

    With `variables`, `${name}` and `${name:-default}` in scalars are replaced before typing
    (`$${` stays a literal `${`); an unquoted scalar is then typed by its new text, so
    `port: ${lab.port.proxy}` is an int.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(str(path), None, "", f"cannot read file: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(str(path), at, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    file = str(path)
    if _FastLoader is not _Loader:
        try:
            return _parse(_FastLoader, text, variables, file)
        except (ScenarioError, _Located, yaml.YAMLError, RecursionError):
            pass  # bad input is rare: the pure loader says what is wrong, word for word as always
    try:
        return _parse(_Loader, text, variables, file)
    except _Located as exc:
        raise ScenarioError(file, exc.line, "", exc.message) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ScenarioError(file, line, "", f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, None, "", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ScenarioError(file, _deep_line(text), "", "invalid YAML: nested too deeply") from None


def _parse(loader_cls: Any, text: str, variables: Lookup | None, file: str) -> Any:
    """One document through `loader_cls`, `${…}` resolved in the node tree before construction."""
    if variables is None or "${" not in text:  # the common case: no second pass
        return yaml.load(text, Loader=loader_cls)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _interpolate(node, variables, file, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _deep_line(text: str, limit: int = 100) -> int:
    """The line where flow collections ([ and {) first nest `limit` deep: where the YAML that
    overflowed the parser's stack is (line 1 if the nesting is by indentation)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            depth += (char in "[{") - (char in "]}")
            if depth >= limit:
                return number
    return 1


def _interpolate(node: yaml.Node, lookup: Lookup, file: str, path: str, seen: set[int]) -> None:
    """Replace `${...}` references in the scalars under `node`, in place, once per node (an
    alias shares its anchor's node; a recursive alias must not loop)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            _interpolate(value, lookup, file, f"{path}.{name}" if path else name, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _interpolate(item, lookup, file, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.ScalarNode) and "${" in node.value:
        line = node.start_mark.line + 1

        def replace(m: re.Match[str]) -> str:
            if m.group(1):
                return "${" + m.group(2) + "}"
            name, has_default, default = (part.strip() for part in m.group(2).partition(":-"))
            try:
                value = lookup(name)
            except ValueError as exc:
                raise ScenarioError(file, line, path, f"${{{name}}}: {exc}") from None
            if value is not None:
                return value
            if has_default:
                return default
            raise ScenarioError(file, line, path, f"${{{name}}} is not set (give a default: ${{{name}:-value}})")

        if "${" in _REF.sub("", node.value):
            raise ScenarioError(
                file,
                line,
                path,
                "a `${` without its `}` or with another `${` inside "
                "(variables do not nest; write `$${` for a literal `${`)",
            )
        node.value = _REF.sub(replace, node.value)
        node.tag = SUBSTITUTED


def _construct_substituted(loader: Any, node: yaml.ScalarNode) -> Substituted:
    return Substituted(node.value)


for _cls in {_Loader, _FastLoader}:
    _cls.add_constructor(SUBSTITUTED, _construct_substituted)


def _typed(value: object) -> object:
    """A substituted scalar where a typed value is expected: the number or boolean it spells
    (YAML 1.2 core forms only: no octal, no `yes`), else the text, which the type then refuses."""
    if not isinstance(value, Substituted):
        return value
    text = value.strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text):
        return float(text)
    if text in ("true", "false", "True", "False", "TRUE", "FALSE"):
        return text.lower() == "true"
    return str(value)


# --- conversion ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a value sits: file, line and key path, for error messages."""

    file: str
    line: int
    path: str

    def key(self, data: object, key: str) -> Where:
        lines = getattr(data, "key_lines", {})
        return Where(self.file, lines.get(key, self.line), f"{self.path}.{key}" if self.path else key)

    def item(self, data: object, index: int) -> Where:
        lines = getattr(data, "item_lines", [])
        line = lines[index] if index < len(lines) else self.line
        return Where(self.file, line, f"{self.path}[{index}]")

    def error(self, message: str) -> ScenarioError:
        return ScenarioError(self.file, self.line, self.path, message)


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def convert(tp: Any, value: object, where: Where) -> Any:
    """Convert loaded YAML `value` to type `tp`, raising located errors."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        marks = [a for a in args[1:] if isinstance(a, DurationMark)]
        if marks:
            try:
                seconds = parse_duration(_typed(value))
            except ValueError as exc:
                raise where.error(str(exc)) from None
            if marks[0].positive and seconds <= 0:
                raise where.error(f"expected a duration above zero, got {_describe(value)}")
            return seconds
        return convert(args[0], value, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        return convert(options[0], value, where)
    if tp is typing.Any:
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise where.error(f"expected a list, got {_describe(value)}")
        return tuple(convert(args[0], v, where.item(value, i)) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise where.error(f"expected a mapping, got {_describe(value)}")
        vt = args[1] if args else typing.Any
        for k in value:
            _utf8(str(k), where.key(value, str(k)))
        return {str(k): convert(vt, v, where.key(value, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and tp not in _PARSERS:
        return build(typing.cast(type, tp), value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise where.error(f"expected one of {choices}, got {_describe(value)}") from None
    if tp in _PARSERS:
        try:
            return _PARSERS[tp](_typed(value))
        except ValueError as exc:
            raise where.error(str(exc)) from None
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: object, where: Where) -> Any:
    if tp is not str:
        value = _typed(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise where.error(f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise where.error(f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise where.error(f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str) and value.strip():
            return _utf8(str(value), where)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise where.error(f"expected a non-empty string, got {_describe(value)}")
    raise TypeError(f"model: unsupported type {tp!r}")  # a programming error, not bad input


_SURROGATE = re.compile("[\ud800-\udfff]")  # as drillkit.redact.is_text (a sibling: no import)


def _utf8(text: str, where: Where) -> str:
    """`text`, unless it holds a lone surrogate: a `\\udcff` escape, or a `${env.…}` variable
    holding bytes that were not UTF-8. No report could be written with it."""
    if _SURROGATE.search(text):
        raise where.error(f"not UTF-8 text: {text!a}")
    return text


@functools.cache
def _shape(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A dataclass's resolved type hints and its fields a file may set (once per class: resolving
    string annotations is most of a small file's build time)."""
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    return hints, fields


def build(cls: type[T], data: object, where: Where, skip: frozenset[str] = frozenset()) -> T:
    """Build dataclass `cls` from a YAML mapping: unknown keys and missing fields are errors.

    `__post_init__` may raise ValueError for cross-field rules; it is reported at the mapping.
    """
    if not isinstance(data, Mapping):
        raise where.error(f"expected a mapping, got {_describe(data)}")
    hints, fields = _shape(typing.cast(type, cls))
    for key in data:
        if key not in fields and key not in skip:
            import difflib  # only for an error: a valid file never needs it

            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known keys: {', '.join(fields)}"
            raise where.key(data, key).error(f"unknown key{hint}")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], where.key(data, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            path = f"{where.path}.{name}" if where.path else name
            raise ScenarioError(where.file, where.line, path, "required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise where.error(str(exc)) from None


# --- JSON Schema ---------------------------------------------------------------------------


_VARIABLE_SCHEMA = {"type": "string", "pattern": r"^\$\{[^{}]+\}$", "description": "a ${variable}, typed once resolved"}


def _or_variable(schema: dict[str, Any]) -> dict[str, Any]:
    """A typed scalar may be written as one `${variable}` (see load_yaml)."""
    return {"anyOf": [schema, _VARIABLE_SCHEMA]}


def schema_of(tp: Any) -> dict[str, Any]:
    """JSON Schema (draft 2020-12 subset) for a type the converter accepts."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        if any(isinstance(a, DurationMark) for a in args[1:]):
            return _or_variable(dict(_DURATION_SCHEMA))
        return schema_of(args[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return schema_of(options[0])
    if origin is tuple:
        return {"type": "array", "items": schema_of(args[0])}
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        vt = args[1] if args else typing.Any
        return {"type": "object", "additionalProperties": schema_of(vt)}
    if tp in _SCHEMAS:
        return _or_variable(dict(_SCHEMAS[tp]))
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(typing.cast(type, tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": "string"} if tp is str else _or_variable({"type": simple[tp]})
    return {}


def dataclass_schema(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("internal"):
            continue
        prop = schema_of(hints[f.name])
        if doc := f.metadata.get("doc"):
            prop["description"] = doc
        props[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # not dataclass's own repr
        out["description"] = cls.__doc__.strip().splitlines()[0]
    return out


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field with a description for the JSON Schema."""
    return dataclasses.field(metadata={"doc": text}, **kwargs)
