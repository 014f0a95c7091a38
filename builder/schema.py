"""Validate recipe YAML against ``recipes/environments/schema.yaml``, with file and line in errors.

The YAML is composed into nodes (not loaded) so every error can name the line of the offending
value. The schema is data: ``type`` (mapping, list, string, bool), ``required``, ``pattern``
(full match), ``fields`` of a mapping, ``keys``/``values`` of a free mapping, ``items`` of a list.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from builder.errors import RecipeError

SCHEMA_NAME = "schema.yaml"


@lru_cache(maxsize=4)
def load_schema(path: Path) -> dict:
    """The schema document (cached per path)."""
    return yaml.safe_load(path.read_text())


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.errors: list[str] = []

    def fail(self, node: yaml.Node, field: str, message: str) -> None:
        self.errors.append(f"{self.source}:{node.start_mark.line + 1}: {field or '<document>'}: {message}")

    def check(self, node: yaml.Node, rule: dict, field: str) -> Any:
        kind = rule.get("type", "string")
        if kind == "mapping" and rule.get("shorthand") and isinstance(node, yaml.ScalarNode):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [
                (yaml.ScalarNode("tag:yaml.org,2002:str", rule["shorthand"], node.start_mark, node.end_mark), node)],
                node.start_mark, node.end_mark)
        if kind == "mapping":
            return self._mapping(node, rule, field)
        if kind == "list":
            return self._list(node, rule, field)
        return self._scalar(node, rule, field, kind)

    def _mapping(self, node: yaml.Node, rule: dict, field: str) -> dict | None:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, field, "expected a mapping")
            return None
        result: dict[str, Any] = {}
        fields = rule.get("fields")
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str):
                self.fail(key_node, field, "keys must be plain strings")
                continue
            if key in result:
                self.fail(key_node, path, "duplicate key")
                continue
            if fields is not None:
                if key not in fields:
                    self.fail(key_node, path, f"unknown field (allowed: {', '.join(fields)})")
                    continue
                result[key] = self.check(value_node, fields[key], path)
            else:
                keys = rule.get("keys", {})
                if not re.fullmatch(keys.get("pattern", ".+"), key):
                    self.fail(key_node, path, f"invalid name {key!r} (must match {keys.get('pattern')})")
                elif keys.get("forbidden") and re.fullmatch(keys["forbidden"], key):
                    self.fail(key_node, path, f"{key!r} is reserved for the platform")
                result[key] = self.check(value_node, rule.get("values", {}), path)
        for name, sub in (fields or {}).items():
            if sub.get("required") and name not in result:
                self.fail(node, f"{field}.{name}" if field else name, "required field is missing")
        return result

    def _list(self, node: yaml.Node, rule: dict, field: str) -> list | None:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, field, "expected a list")
            return None
        if len(node.value) < rule.get("min_items", 0):
            self.fail(node, field, f"expected at least {rule['min_items']} item(s)")
        return [self.check(item, rule.get("items", {}), f"{field}[{i}]") for i, item in enumerate(node.value)]

    def _scalar(self, node: yaml.Node, rule: dict, field: str, kind: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, field, f"expected a {kind}")
            return None
        if kind == "bool":
            if node.value.lower() not in {"true", "false"}:
                self.fail(node, field, "expected true or false")
                return None
            return node.value.lower() == "true"
        text = node.value  # numbers stay text: version 1.10 is not 1.1
        pattern = rule.get("pattern")
        if pattern and not re.fullmatch(pattern, text):
            help_text = rule.get("help") or f"must match {pattern}"
            self.fail(node, field, f"invalid value {text!r} ({help_text})")
            return None
        return text


def validate_text(text: str, source: str, schema_path: Path) -> dict:
    """Validate recipe ``text`` (named ``source`` in errors); returns the plain values."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{where}: malformed YAML: {problem}") from None
    if root is None:
        raise RecipeError(f"{source}:1: <document>: the recipe is empty")
    validator = _Validator(source)
    value = validator.check(root, load_schema(schema_path), "")
    if validator.errors:
        raise RecipeError("; ".join(validator.errors))
    return value
