"""The wire models as stored JSON Schema, and a standard-library checker for it.

Importing pydantic and building the models costs a command-line tool several
times a bare interpreter start before it has done anything. `wire-schema.json`,
next to this module, holds the JSON Schema pydantic generates from the models
for the host socket's requests (`host_request`) and for every response
(`response`). `check` validates a decoded value against one of them with the
standard library only, so the `hive-core` client commands check what they send
and what they get back without importing pydantic. `generate` rebuilds the
document from the models; tests/hive_share/test_schema.py fails while the stored
file is stale, and `python -m hive_share.schema` rewrites it.

The checker knows the subset pydantic emits for these models: `$ref` into
`$defs`, `oneOf` with a discriminator, `anyOf`, `const`, `enum`, `type`,
`properties` / `required` / `additionalProperties`, `items`, `minItems` /
`maxItems`, `minLength` / `maxLength`, `pattern`, (exclusive) minimum and
maximum, and `default` (filled in for absent fields, as pydantic does). Checks
written as Python validators (agent names, a body's size as JSON) are not in
the schema; the server still runs them.
"""

from __future__ import annotations

import json
import math
import operator
import re
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("wire-schema.json")
DOCUMENTS = ("host_request", "response")
"""The stored documents: requests on `host.sock`, and responses on every socket."""

_KINDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a finite number",
    "boolean": "true or false",
    "null": "null",
}
_NOT_SCHEMA = ("default", "const", "enum", "examples")
"""Keys whose values are data, not schemas: never stripped of titles."""

_stored: dict[str, Any] | None = None

Where = tuple[str | int, ...]
"""A path into a value: keys and list indexes."""


class SchemaError(ValueError):
    """A value that does not fit the schema; `path` leads from the top to the bad part."""

    def __init__(self, path: Where, message: str, wrong_type: bool = False) -> None:
        super().__init__(f"{'.'.join(map(str, path)) or 'value'}: {message}")
        self.path = path
        self.message = message
        self.wrong_type = wrong_type


def check(document: str, value: Any) -> Any:
    """`value` checked against a stored document, absent fields filled with their defaults.

    Raises:
        SchemaError: the first part of `value` that does not fit.
    """
    global _stored
    if _stored is None:
        _stored = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    root = _stored[document]
    return _Checker(root.get("$defs", {})).check(root, value, ())


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _fits(kind: str, value: Any) -> bool:
    match kind:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            number = isinstance(value, int | float) and not isinstance(value, bool)
            return number and math.isfinite(value)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
    raise SchemaError((), f"the stored schema uses an unknown type {kind!r}")


def _same(value: Any, expected: Any) -> bool:
    """Equal as JSON values: `true` is not `1`."""
    return bool(value == expected) and isinstance(value, bool) == isinstance(expected, bool)


class _Checker:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def check(self, schema: dict[str, Any], value: Any, path: Where) -> Any:
        if "$ref" in schema:
            return self.check(self._resolve(schema["$ref"]), value, path)
        if "discriminator" in schema:
            return self._tagged(schema["discriminator"], value, path)
        if "anyOf" in schema or "oneOf" in schema:
            return self._either(schema.get("anyOf") or schema["oneOf"], value, path)
        if "const" in schema and not _same(value, schema["const"]):
            raise SchemaError(path, f"must be {json.dumps(schema['const'])}")
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            raise SchemaError(path, f"must be one of: {', '.join(map(str, schema['enum']))}")
        kind = schema.get("type")
        if kind is None:
            return value
        if not _fits(kind, value):
            raise SchemaError(path, f"must be {_KINDS[kind]}", wrong_type=True)
        if kind == "object":
            return self._object(schema, value, path)
        if kind == "array":
            return self._array(schema, value, path)
        if kind == "string":
            _string(schema, value, path)
        elif kind in ("integer", "number"):
            _bounds(schema, value, path)
        return value

    def _resolve(self, ref: str) -> dict[str, Any]:
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in self.defs:
            raise SchemaError((), f"the stored schema has no definition {ref!r}")
        found: dict[str, Any] = self.defs[name]
        return found

    def _tagged(self, disc: dict[str, Any], value: Any, path: Where) -> Any:
        if not isinstance(value, dict):
            raise SchemaError(path, "must be an object", wrong_type=True)
        prop, mapping = disc["propertyName"], disc["mapping"]
        tag = value.get(prop)
        if not isinstance(tag, str) or tag not in mapping:
            raise SchemaError((*path, prop), f"must be one of: {', '.join(sorted(mapping))}")
        return self.check(self._resolve(mapping[tag]), value, path)

    def _either(self, options: list[dict[str, Any]], value: Any, path: Where) -> Any:
        errors: list[SchemaError] = []
        for option in options:
            try:
                return self.check(option, value, path)
            except SchemaError as exc:
                errors.append(exc)
        # An option of the right type says best what is wrong (`must be ≤ 180`).
        for error in errors:
            if not (error.wrong_type and error.path == path):
                raise error
        kinds = " or ".join(e.message.removeprefix("must be ") for e in errors)
        raise SchemaError(path, f"must be {kinds}", wrong_type=True)

    def _object(self, schema: dict[str, Any], value: dict[str, Any], path: Where) -> Any:
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in props:
                out[key] = self.check(props[key], item, (*path, key))
            elif extra is False:
                raise SchemaError((*path, key), "is not a known field")
            elif isinstance(extra, dict):
                out[key] = self.check(extra, item, (*path, key))
            else:
                out[key] = item
        for key, sub in props.items():
            if key in out:
                continue
            if key in schema.get("required", ()):
                raise SchemaError((*path, key), "is required")
            if "default" in sub:
                out[key] = json.loads(json.dumps(sub["default"]))  # a fresh copy
        return out

    def _array(self, schema: dict[str, Any], value: list[Any], path: Where) -> Any:
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise SchemaError(path, f"must hold at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(path, f"must hold at most {schema['maxItems']} items")
        items = schema.get("items")
        if items is None:
            return value
        return [self.check(items, item, (*path, i)) for i, item in enumerate(value)]


def _string(schema: dict[str, Any], value: str, path: Where) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        least = schema["minLength"]
        raise SchemaError(path, f"must be at least {least} character{'s' * (least != 1)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaError(path, f"must be at most {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        raise SchemaError(path, f"must match {schema['pattern']}")


def _bounds(schema: dict[str, Any], value: float, path: Where) -> None:
    for key, fits, sign in (
        ("minimum", operator.ge, "≥"),
        ("maximum", operator.le, "≤"),
        ("exclusiveMinimum", operator.gt, ">"),
        ("exclusiveMaximum", operator.lt, "<"),
    ):
        if key in schema and not fits(value, schema[key]):
            raise SchemaError(path, f"must be {sign} {_number(schema[key])}")


def _bare(node: Any) -> Any:
    """`node` without titles and descriptions: they change with every docstring edit."""
    if isinstance(node, list):
        return [_bare(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "description"):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _bare(sub) for name, sub in value.items()}
        elif key in _NOT_SCHEMA:
            out[key] = value
        else:
            out[key] = _bare(value)
    return out


def generate() -> dict[str, Any]:
    """The documents as the models define them now (imports pydantic and the models)."""
    from hive_share.requests import HOST_REQUEST
    from hive_share.responses import RESPONSE

    return {
        "host_request": _bare(HOST_REQUEST.json_schema()),
        "response": _bare(RESPONSE.json_schema()),
    }


def render(documents: dict[str, Any]) -> str:
    """The stored file's text for `documents`."""
    return json.dumps(documents, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
