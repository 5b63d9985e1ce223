"""Read a live database's schema in the shape of tests/contracts/medianest-schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

#: The backend's contracts, copied into the repository (tests/contracts/README.md).
CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"

Snapshot = dict[str, dict[str, dict[str, Any]]]


def load_contract(name: str = "medianest-schema.json") -> Snapshot:
    return json.loads((CONTRACTS / name).read_text(encoding="utf-8"))


def _type(row: Any) -> str:
    if row.data_type == "timestamp without time zone":
        return f"timestamp without time zone({row.datetime_precision})"
    if row.data_type == "numeric" and row.numeric_precision is not None:
        return f"numeric({row.numeric_precision},{row.numeric_scale})"
    return str(row.data_type)


def snapshot(connection: Connection, tables: set[str] | None = None) -> Snapshot:
    """Columns (type, nullability, default), constraints and indexes of public tables."""
    result: Snapshot = {}
    columns = connection.execute(
        text(
            """
            SELECT table_name, column_name, data_type, datetime_precision, numeric_precision,
                   numeric_scale, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'public'
            """
        )
    )
    for row in columns:
        if tables is not None and row.table_name not in tables:
            continue
        table = result.setdefault(row.table_name, {"columns": {}, "constraints": {}, "indexes": {}})
        table["columns"][row.column_name] = {
            "default": row.column_default or "",
            "nullable": row.is_nullable == "YES",
            "type": _type(row),
        }
    constraints = connection.execute(
        text(
            """
            SELECT rel.relname AS table_name, con.conname,
                   pg_get_constraintdef(con.oid) AS definition
            FROM pg_constraint con
            JOIN pg_class rel ON rel.oid = con.conrelid
            JOIN pg_namespace ns ON ns.oid = rel.relnamespace
            WHERE ns.nspname = 'public' AND con.contype <> 'n'  -- PostgreSQL 18 lists NOT NULLs
            """
        )
    )
    for row in constraints:
        if row.table_name in result:
            result[row.table_name]["constraints"][row.conname] = row.definition
    indexes = connection.execute(
        text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    )
    for row in indexes:
        if row.tablename in result:
            result[row.tablename]["indexes"][row.indexname] = row.indexdef
    return result


def without_indexes(schema: Snapshot, names: set[str] | frozenset[str]) -> Snapshot:
    return {
        table: {
            **parts,
            "indexes": {k: v for k, v in parts["indexes"].items() if k not in names},
        }
        for table, parts in schema.items()
    }


def differences(actual: Snapshot, expected: Snapshot) -> list[str]:
    """Readable differences, one line per table/kind/name (empty when equal)."""
    lines = []
    for table in sorted(set(actual) | set(expected)):
        if table not in actual or table not in expected:
            lines.append(f"{table}: only in {'actual' if table in actual else 'expected'}")
            continue
        for kind in ("columns", "constraints", "indexes"):
            mine, theirs = actual[table][kind], expected[table][kind]
            for name in sorted(set(mine) | set(theirs)):
                if mine.get(name) != theirs.get(name):
                    lines.append(
                        f"{table}.{kind}.{name}: {mine.get(name)!r} != {theirs.get(name)!r}"
                    )
    return lines
