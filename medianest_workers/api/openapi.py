"""The OpenAPI document says which job kinds exist and what payload each one takes.

`POST /v1/jobs` and `POST /v1/jobs/batch` validate `kind` and `payload` through the platform
(so a refusal names the kind or the payload's field); their generic request models would
leave a client generated from the document, or a fuzzer, guessing. Here the document's job
bodies become a union discriminated by `kind`, built from the registered jobs when the
document is first asked for: one variant per kind with its payload's schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from medianest_workers.api.schemas import MAX_KEY_LENGTH, MAX_USER_ID_LENGTH
from medianest_workers.platform.registry import JobSpec, all_specs

REF_TEMPLATE = "#/components/schemas/{model}"

#: The request bodies whose `JobCreate`-like schema is replaced by the union of kinds.
_SINGLE = ("/v1/jobs", "post")
_BATCH = ("/v1/jobs/batch", "post")


def _accepts_empty(model: type[BaseModel]) -> bool:
    """Whether `{}` is a valid payload (no required field, no validator asking for one)."""
    if any(field.is_required() for field in model.model_fields.values()):
        return False
    try:
        model.model_validate({})
    except ValidationError:
        return False
    return True


def _variant(spec: JobSpec, *, batch: bool) -> type[BaseModel]:
    """One kind's request body: `kind` fixed, `payload` of the kind's model."""
    required = not _accepts_empty(spec.payload_model)
    # A payload that {} satisfies may be left out (the API reads it as {}).
    payload: Any = (
        (spec.payload_model, ...) if required else (spec.payload_model, Field(default_factory=dict))
    )
    fields: dict[str, Any] = {
        "kind": (Literal[spec.kind], Field(description=spec.description or spec.kind)),
        "payload": payload,
        "user_id": (
            str | None,
            Field(default=None, min_length=1, max_length=MAX_USER_ID_LENGTH),
        ),
    }
    if batch:
        fields["idempotency_key"] = (
            str | None,
            Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH),
        )
    name = "".join(part.capitalize() for part in spec.kind.replace("_", ".").split("."))
    return create_model(
        f"{name}{'BatchJob' if batch else 'Job'}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def job_union_schema(specs: list[JobSpec], *, batch: bool) -> tuple[dict[str, Any], dict]:
    """The union's schema (`oneOf` with a `kind` discriminator) and the definitions it uses."""
    variants = [_variant(spec, batch=batch) for spec in specs]
    union: Any = variants[0]
    for variant in variants[1:]:
        union = union | variant
    if len(variants) > 1:
        union = Annotated[union, Field(discriminator="kind")]
    schema = TypeAdapter(union).json_schema(ref_template=REF_TEMPLATE)
    return schema, schema.pop("$defs", {})


def install(app: FastAPI) -> None:
    """Make `app.openapi()` describe the job bodies per kind (computed once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        specs = all_specs()
        if specs:
            _describe_jobs(document, specs)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_jobs(document: dict[str, Any], specs: list[JobSpec]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    single, single_defs = job_union_schema(specs, batch=False)
    batch, batch_defs = job_union_schema(specs, batch=True)
    components.update(single_defs)
    components.update(batch_defs)
    components["JobCreateByKind"] = single
    components["BatchJobCreateByKind"] = batch
    path, method = _SINGLE
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": REF_TEMPLATE.format(model="JobCreateByKind")}
    path, method = _BATCH
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    batch_ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    jobs = components[batch_ref]["properties"]["jobs"]
    jobs["items"] = {"$ref": REF_TEMPLATE.format(model="BatchJobCreateByKind")}
