"""A payload checked against its JSON Schema: the types the OpenAPI document publishes, exactly.

Pydantic validates payloads in lax mode (a string becomes a datetime, `2.0` an integer), and lax
mode also coerces what JSON Schema calls the wrong type: `false` or `"2"` for an integer, `1`
for a boolean. A client generated from the document (or a fuzzer) must be able to trust it, so
after pydantic accepted a payload, its model's JSON Schema is applied too (jsonschema, formats
not asserted: pydantic checked those). Validators are compiled once per model.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel


@functools.cache
def _validator(model: type[BaseModel]) -> Draft202012Validator:
    return Draft202012Validator(model.model_json_schema())


def schema_violations(model: type[BaseModel], payload: Any) -> list[dict[str, str]]:
    """[{field, message}] for each place `payload` breaks `model`'s JSON Schema; [] if none."""
    errors = sorted(_validator(model).iter_errors(payload), key=lambda error: list(error.path))
    return [
        {
            "field": ".".join(str(part) for part in error.absolute_path) or "payload",
            "message": f"{error.message} (the type the OpenAPI document gives)",
        }
        for error in errors
    ]
