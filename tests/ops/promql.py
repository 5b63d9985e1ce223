"""Metric names used in PromQL expressions and exported by /metrics pages (for tests/ops).

Not a PromQL parser: enough of the language to find the metric names of our rules and
dashboard (strings, label matchers, ranges and grouping lists removed; functions,
aggregations and keywords skipped). tests/ops/test_monitoring.py checks it on examples.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRING.sub('""', expression)
    text = _BRACES.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


_SUFFIXES = {
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "counter": ("_total", "_created"),
}


def exported_families(exposition: str) -> dict[str, set[str]]:
    """Each family of a /metrics page, with the names a query can select of it."""
    families = {}
    for family in text_string_to_metric_families(exposition):
        names = {family.name, *(sample.name for sample in family.samples)}
        names.update(f"{family.name}{suffix}" for suffix in _SUFFIXES.get(family.type, ()))
        families[family.name] = names
    return families


def exported_names(exposition: str) -> set[str]:
    """Every name a query can select on a /metrics page: families, samples, their suffixes.

    A family without samples still counts (its # TYPE line says what it exports).
    """
    return set().union(*exported_families(exposition).values())
