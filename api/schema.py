"""A small schema layer: frozen dataclasses describe requests and responses.

One class serves three purposes: :func:`load` validates untrusted input into an instance
(collecting every error, refusing unknown fields), :func:`dump` turns a response instance
into JSON values, and :class:`SchemaRegistry` emits the JSON Schema (draft 2020-12, as
OpenAPI 3.1 uses it) that ``/openapi.json`` publishes. Constraints live in field metadata::

    @dataclass(frozen=True)
    class NewUser:
        username: str = field(metadata=rule(min_length=3, max_length=64, pattern=USERNAME))
        role: Literal["dgcl_admin", "operator"]
        province_code: str | None = None

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Decimal`` (a JSON string),
``date``, ``datetime``, ``Literal[...]``, ``X | None``, ``list[X]``, ``dict[str, X]``,
``Any`` and nested schema dataclasses. A field without a default is required.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from core.clock import as_utc
from core.errors import InvalidInput

T = TypeVar("T")

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


class ValidationFailed(InvalidInput):
    """The request does not match its schema; ``errors`` lists every offending field."""

    type = "validation-failed"
    title = "The request is not valid"
    status = 422


@dataclass(frozen=True)
class Rule:
    """Constraints and documentation of one field."""

    description: str = ""
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    format: str | None = None
    example: Any = None
    # Never echoed back in a response (passwords, PINs, one-time codes).
    write_only: bool = False


def rule(**kwargs: Any) -> dict[str, Rule]:
    """Field metadata: ``field(metadata=rule(max_length=200))``."""
    return {"rule": Rule(**kwargs)}


def _rule_of(f: dataclasses.Field[Any]) -> Rule:
    found = f.metadata.get("rule")
    return found if isinstance(found, Rule) else Rule()


_HINTS: dict[Any, dict[str, Any]] = {}


def _hints(cls: Any) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = get_type_hints(cls)
    return found


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def is_schema(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _optional_inner(tp: Any) -> tuple[bool, Any]:
    """(True, X) for ``X | None``; (False, tp) otherwise."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != len(get_args(tp)):
            inner = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
            return True, inner
    return False, tp


# --------------------------------------------------------------------------- loading


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path or "(body)", "message": message})


_MISSING = object()


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value),
                                                                         type(value).__name__)


def _check_rule(value: Any, r: Rule, path: str, errors: _Errors) -> None:
    if isinstance(value, str):
        if r.min_length is not None and len(value) < r.min_length:
            errors.add(path, f"must be at least {r.min_length} characters long")
        if r.max_length is not None and len(value) > r.max_length:
            errors.add(path, f"must be at most {r.max_length} characters long")
        if r.pattern is not None and not re.search(r.pattern, value):
            errors.add(path, f"does not match the pattern {r.pattern}")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if r.minimum is not None and value < r.minimum:
            errors.add(path, f"must be at least {r.minimum:g}")
        if r.maximum is not None and value > r.maximum:
            errors.add(path, f"must be at most {r.maximum:g}")
    if isinstance(value, list):
        if r.min_items is not None and len(value) < r.min_items:
            errors.add(path, f"needs at least {r.min_items} items")
        if r.max_items is not None and len(value) > r.max_items:
            errors.add(path, f"takes at most {r.max_items} items")


def _convert(tp: Any, value: Any, r: Rule, path: str, errors: _Errors,
             from_text: bool) -> Any:
    optional, tp = _optional_inner(tp)
    if value is None:
        if optional:
            return None
        errors.add(path, "must not be null")
        return _MISSING
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            errors.add(path, "must be one of " + ", ".join(repr(c) for c in choices))
            return _MISSING
        return value
    if tp is bool:
        if from_text and isinstance(value, str):
            lowered = value.lower()
            if lowered in {"true", "1"}:
                return True
            if lowered in {"false", "0"}:
                return False
        if not isinstance(value, bool):
            errors.add(path, f"must be a boolean, not {_type_name(value)}")
            return _MISSING
        return value
    if tp is int:
        if from_text and isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.add(path, f"must be an integer, not {_type_name(value)}")
            return _MISSING
        _check_rule(value, r, path, errors)
        return value
    if tp is float:
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.add(path, f"must be a number, not {_type_name(value)}")
            return _MISSING
        _check_rule(value, r, path, errors)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.add(path, f"must be a string, not {_type_name(value)}")
            return _MISSING
        if "\x00" in value:
            errors.add(path, "must not contain NUL characters")
            return _MISSING
        _check_rule(value, r, path, errors)
        return value
    if tp is Decimal:
        if not isinstance(value, str) or not re.fullmatch(DECIMAL_PATTERN, value):
            errors.add(path, "must be a decimal number written as a string, e.g. \"850.00\"")
            return _MISSING
        try:
            number = Decimal(value)
        except InvalidOperation:
            errors.add(path, "is not a decimal number")
            return _MISSING
        _check_rule(number, r, path, errors)
        return number
    if tp is date:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            errors.add(path, "must be a date, YYYY-MM-DD")
            return _MISSING
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.add(path, "is not a valid date")
            return _MISSING
    if tp is datetime:
        if not isinstance(value, str):
            errors.add(path, "must be a date-time string (RFC 3339)")
            return _MISSING
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            errors.add(path, "is not a valid RFC 3339 date-time")
            return _MISSING
        if parsed.tzinfo is None:
            errors.add(path, "must carry a time zone offset")
            return _MISSING
        return as_utc(parsed)
    if origin is list:
        if not isinstance(value, list):
            errors.add(path, f"must be an array, not {_type_name(value)}")
            return _MISSING
        _check_rule(value, r, path, errors)
        (item_tp,) = get_args(tp)
        if item_tp is str and all(type(item) is str and "\x00" not in item
                                  for item in value):
            # What the loop below makes of plain strings (no rule applies to the items),
            # in one pass: a batch of 1,000 hashes spent milliseconds here.
            return list(value)
        out = [_convert(item_tp, item, Rule(), f"{path}[{i}]", errors, False)
               for i, item in enumerate(value)]
        return out
    if origin is dict:
        if not isinstance(value, dict):
            errors.add(path, f"must be an object, not {_type_name(value)}")
            return _MISSING
        _, value_tp = get_args(tp)
        return {str(k): _convert(value_tp, v, Rule(), f"{path}.{k}", errors, False)
                for k, v in value.items()}
    if is_schema(tp):
        if not isinstance(value, dict):
            errors.add(path, f"must be an object, not {_type_name(value)}")
            return _MISSING
        return _load_object(tp, value, path, errors, from_text=False)
    raise TypeError(f"unsupported schema type {tp!r}")  # a programming error


def _load_object(cls: type[T], data: Mapping[str, Any], path: str, errors: _Errors, *,
                 from_text: bool) -> T:
    hints = _hints(cls)
    known = {f.name for f in _fields(cls)}
    for key in data:
        if key not in known:
            errors.add(f"{path}.{key}" if path else str(key), "is not a known field")
    values: dict[str, Any] = {}
    for f in _fields(cls):
        sub = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                errors.add(sub, "is required")
            continue
        converted = _convert(hints[f.name], data[f.name], _rule_of(f), sub, errors, from_text)
        if converted is not _MISSING:
            values[f.name] = converted
    if errors.items:
        return None  # type: ignore[return-value]  # the caller raises
    try:
        return cls(**values)
    except InvalidInput as exc:  # a __post_init__ check across fields
        errors.add(path, exc.detail)
        return None  # type: ignore[return-value]


def load(cls: type[T], data: Any, *, where: str = "body") -> T:
    """Validate JSON ``data`` into a ``cls`` instance or raise :class:`ValidationFailed`."""
    errors = _Errors()
    if not isinstance(data, dict):
        raise ValidationFailed(f"the {where} must be a JSON object",
                               errors=[{"field": "(body)", "message": "must be an object"}])
    result = _load_object(cls, data, "", errors, from_text=False)
    if errors.items:
        raise ValidationFailed(f"the {where} is not valid: " + "; ".join(
            f"{e['field']} {e['message']}" for e in errors.items[:5]), errors=errors.items)
    return result


def load_query(cls: type[T], args: Mapping[str, list[str]]) -> T:
    """Validate query-string arguments (each a list of strings) into ``cls``."""
    errors = _Errors()
    flat: dict[str, Any] = {}
    hints = _hints(cls)
    for key, values in args.items():
        _, tp = _optional_inner(hints.get(key, str))
        if get_origin(tp) is list:
            flat[key] = list(values)
        elif len(values) > 1:
            errors.add(key, "is given more than once")
        else:
            flat[key] = values[0]
    if errors.items:
        raise ValidationFailed("the query string is not valid", errors=errors.items)
    result = _load_object(cls, flat, "", errors, from_text=True)
    if errors.items:
        raise ValidationFailed("the query string is not valid: " + "; ".join(
            f"{e['field']} {e['message']}" for e in errors.items[:5]), errors=errors.items)
    return result


# --------------------------------------------------------------------------- dumping


_PLAIN = frozenset({str, int, float, bool, type(None)})
# The names dump writes, per class met (None: not a schema). Filled on first use: the set of
# classes is the code's, so it stays small.
_DUMPED: dict[type, tuple[str, ...] | None] = {}


def _dumped_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _DUMPED[cls]
    except KeyError:
        found = _DUMPED[cls] = tuple(f.name for f in _fields(cls)
                                     if not _rule_of(f).write_only) if is_schema(cls) else None
        return found


def dump(value: Any) -> Any:
    """JSON values of a response instance (dates as ISO 8601, decimals as strings)."""
    kind = type(value)
    if kind in _PLAIN:  # most values of a response: nothing to convert, nothing to look up
        return value
    names = _dumped_names(kind)
    if names is not None:
        return {name: dump(getattr(value, name)) for name in names}
    if isinstance(value, datetime):
        return as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        if all(type(v) is str for v in value):  # signatures, hashes: as they are
            return list(value)
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- JSON Schema


class SchemaRegistry:
    """Collects the named schemas referenced by operations (``components.schemas``)."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, type] = {}

    def ref(self, cls: type) -> dict[str, Any]:
        name = cls.__name__
        owner = self._owners.get(name)
        if owner is not None and owner is not cls:
            raise TypeError(f"two schemas are named {name}: {owner!r} and {cls!r}")
        if owner is None:
            self._owners[name] = cls
            self.components[name] = {}  # placeholder first: recursive schemas terminate
            self.components[name] = self._object(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def _object(self, cls: type) -> dict[str, Any]:
        hints = _hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in _fields(cls):
            properties[f.name] = self.of(hints[f.name], _rule_of(f))
            if f.default is MISSING and f.default_factory is MISSING:
                required.append(f.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties,
                                  "additionalProperties": False}
        if required:
            schema["required"] = required
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(f"{cls.__name__}("):
            schema["description"] = doc
        return schema

    def of(self, tp: Any, r: Rule | None = None) -> dict[str, Any]:
        """The JSON Schema of a type, with the constraints of ``r``."""
        r = r or Rule()
        optional, tp = _optional_inner(tp)
        schema = self._plain(tp, r)
        if r.description:
            schema = {**schema, "description": r.description}
        if r.example is not None:
            schema = {**schema, "examples": [r.example]}
        if r.write_only:
            schema = {**schema, "writeOnly": True}
        if optional:
            if "$ref" in schema:
                return {"anyOf": [{"$ref": schema.pop("$ref")}, {"type": "null"}], **schema}
            if "enum" in schema:
                return {**schema, "enum": [*schema["enum"], None],
                        "type": [schema["type"], "null"]}
            if "type" in schema:
                return {**schema, "type": [schema["type"], "null"]}
            return {"anyOf": [schema, {"type": "null"}]}
        return schema

    def _plain(self, tp: Any, r: Rule) -> dict[str, Any]:
        origin = get_origin(tp)
        if tp is Any:
            return {}
        if origin is Literal:
            choices = list(get_args(tp))
            kind = "integer" if all(isinstance(c, int) for c in choices) else "string"
            return {"type": kind, "enum": choices}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return _with_bounds({"type": "integer"}, r)
        if tp is float:
            return _with_bounds({"type": "number"}, r)
        if tp is str:
            schema: dict[str, Any] = {"type": "string"}
            if r.min_length is not None:
                schema["minLength"] = r.min_length
            if r.max_length is not None:
                schema["maxLength"] = r.max_length
            if r.pattern is not None:
                schema["pattern"] = r.pattern
            if r.format is not None:
                schema["format"] = r.format
            return schema
        if tp is Decimal:
            return {"type": "string", "pattern": DECIMAL_PATTERN}
        if tp is date:
            return {"type": "string", "format": "date"}
        if tp is datetime:
            return {"type": "string", "format": "date-time"}
        if origin is list:
            (item_tp,) = get_args(tp)
            schema = {"type": "array", "items": self.of(item_tp)}
            if r.min_items is not None:
                schema["minItems"] = r.min_items
            if r.max_items is not None:
                schema["maxItems"] = r.max_items
            return schema
        if origin is dict:
            _, value_tp = get_args(tp)
            return {"type": "object", "additionalProperties": self.of(value_tp)}
        if is_schema(tp):
            return self.ref(tp)
        raise TypeError(f"unsupported schema type {tp!r}")


def _with_bounds(schema: dict[str, Any], r: Rule) -> dict[str, Any]:
    if r.minimum is not None:
        schema["minimum"] = r.minimum
    if r.maximum is not None:
        schema["maximum"] = r.maximum
    return schema


def query_parameters(cls: type, registry: SchemaRegistry) -> list[dict[str, Any]]:
    """OpenAPI ``parameters`` (in: query) for a query schema."""
    params = []
    hints = _hints(cls)
    for f in _fields(cls):
        r = _rule_of(f)
        schema = registry.of(hints[f.name], dataclasses.replace(r, description=""))
        param: dict[str, Any] = {"name": f.name, "in": "query", "schema": schema,
                                 "required": f.default is MISSING
                                 and f.default_factory is MISSING}
        if f.default is not MISSING and f.default is not None:
            param["schema"] = {**schema, "default": dump(f.default)}
        if r.description:
            param["description"] = r.description
        if get_origin(_optional_inner(hints[f.name])[1]) is list:
            param["explode"] = True
        params.append(param)
    return params


@cache
def page_of(item: type) -> type:
    """A page of ``item`` (``<Item>Page``): the envelope of every list response."""
    page = dataclasses.make_dataclass(
        f"{item.__name__}Page",
        [("items", list[item]),  # type: ignore[valid-type]
         ("total", int, dataclasses.field(metadata=rule(
             description="How many items match the filters, across all pages."))),
         ("limit", int),
         ("offset", int),
         ("next_offset", int | None, dataclasses.field(metadata=rule(
             description="The offset of the next page; null on the last page.")))],
        frozen=True)
    page.__doc__ = f"A page of {item.__name__} items, in a stable order."
    page.__module__ = item.__module__
    return page


def make_page(item: type, items: list[Any], total: int, limit: int, offset: int) -> Any:
    nxt = offset + limit if offset + limit < total else None
    return page_of(item)(items=items, total=total, limit=limit, offset=offset,
                         next_offset=nxt)


def dataclass_names(cls: type) -> list[str]:
    return [f.name for f in _fields(cls)]


__all__ = ["Rule", "SchemaRegistry", "ValidationFailed", "dump", "load", "load_query",
           "make_page", "page_of", "rule"]


@dataclass(frozen=True)
class PageQuery:
    """``limit`` and ``offset``: every list takes them (subclass it to add filters)."""

    limit: int = dataclasses.field(default=50, metadata=rule(
        minimum=1, maximum=500, description="Items per page (1-500)."))
    offset: int = dataclasses.field(default=0, metadata=rule(
        minimum=0, maximum=1_000_000_000, description="Items to skip, from next_offset."))
