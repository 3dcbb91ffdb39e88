"""The OpenAPI document, complete enough to generate a client from.

FastAPI's own document is finished here, once, when first asked for:

* ``JobOut`` becomes a union of one job model per registered kind, discriminated by
  ``kind``, each with its kind's ``result`` model (``app.jobs.schemas.register_result``);
  ``JobCreate`` likewise pairs each kind with its params model;
* every error response is ``application/problem+json`` with the ``ProblemDetails`` schema,
  and every operation documents the errors it can answer (422 for any input, 404 for a path
  id, 409/422 for a waited job that was canceled/failed, ``default`` for the rest);
* parameters FastAPI left without a description get the API-wide one for their name.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter, create_model
from pydantic.json_schema import models_json_schema

from app.jobs.kind import KINDS, request_model
from app.jobs.schemas import job_variants
from app.problems import PROBLEM_MEDIA_TYPE, ProblemDetails

REF = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": REF.format(model="ProblemDetails")}

# Descriptions of parameters shared by many routes, by (location, name).
PARAMETERS = {
    ("path", "checkpoint_id"): "checkpoint id",
    ("path", "dataset_id"): "dataset id",
    ("path", "merge_id"): "merge id",
    ("path", "prediction_id"): "prediction id",
    ("path", "job_id"): "job id",
    ("path", "name"): "metanetwork name",
    ("query", "checkpoint_id"): "only records about this checkpoint",
    ("query", "job_id"): "only the record the job with this id left",
    ("query", "metanetwork"): "only answers of the metanetwork with this name",
    ("query", "created_after"): "only records created after this time (naive: UTC)",
    ("query", "created_before"): "only records created before this time (naive: UTC)",
    ("query", "sha256_prefix"): "only checkpoints whose sha256 starts with this (hex)",
}

WAITED = {
    409: "a waited-for job was canceled (problem type job-canceled; the job is in `job`)",
    422: "invalid input, or a waited-for job failed (problem type job-failed; the job is in "
    "`job`)",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``app.openapi_url``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_models(components, [ProblemDetails])
    components["ProblemDetails"]["properties"]["job"] = {
        "anyOf": [{"$ref": REF.format(model="JobOut")}, {"type": "null"}],
        "description": ProblemDetails.model_fields["job"].description,
    }
    kinds = sorted(KINDS)
    if kinds:
        _union(components, "JobOut", job_variants(kinds), "serialization")
        _union(components, "JobCreate", _create_variants(kinds), "validation")
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _enumerate_kinds(path, operation, kinds)
            _document_errors(path, operation)
            _describe_parameters(operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _add_models(components: dict[str, Any], models: list[type[BaseModel]]) -> None:
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    components.update(top.get("$defs", {}))


def _union(
    components: dict[str, Any], name: str, variants: list[type[BaseModel]], mode: str
) -> None:
    """Replace component ``name`` by the union of ``variants`` discriminated by ``kind``."""
    union: Any = Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007
    found = TypeAdapter(union).json_schema(mode=mode, ref_template=REF)  # type: ignore[arg-type]
    components.update(found.pop("$defs", {}))
    found["title"] = name
    found["description"] = f"One of the job kinds ({', '.join(sorted(KINDS))}), by `kind`."
    components[name] = found


def _create_variants(kinds: list[str]) -> list[type[BaseModel]]:
    """``JobCreate`` per kind: ``kind`` fixed and ``params`` its kind's params model."""
    variants = []
    for kind in kinds:
        name = "".join(part.capitalize() for part in kind.replace("-", "_").split("_"))
        variants.append(
            create_model(
                f"{name}JobCreate",
                kind=(Literal[kind], Field(description="job kind")),  # type: ignore[valid-type]
                params=(request_model(KINDS[kind]), Field(description=f"the {kind} parameters")),
            )
        )
    return variants


def _enumerate_kinds(path: str, operation: dict[str, Any], kinds: list[str]) -> None:
    """The job list's ``kind`` filter takes the registered kinds (known only once every
    domain registered its own, so set here rather than in the route's type)."""
    if path != "/v1/jobs" or not kinds:
        return
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] == "kind":
            schema = parameter.get("schema", {})
            for option in schema.get("anyOf", [schema]):
                if option.get("type") == "string":
                    option["enum"] = kinds


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    has_input = bool(operation.get("parameters") or operation.get("requestBody"))
    waits = any(p.get("name") == "wait" for p in operation.get("parameters", []))
    if has_input:
        responses.setdefault("422", {})
    if "{" in path:
        responses.setdefault("404", {})
    if waits:
        responses.setdefault("409", {})
    responses["default"] = {"description": "any other error (e.g. 401, 403, 429, 500, 503)"}
    for code, response in responses.items():
        if code != "default" and int(code) < 400:
            continue
        if waits and code in ("409", "422"):
            response["description"] = WAITED[int(code)]
        elif response.get("description") in (None, "", "Validation Error"):
            response["description"] = HTTPStatus(int(code)).phrase
        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}


def _describe_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("description"):
            continue
        described = PARAMETERS.get((parameter["in"], parameter["name"]))
        if described:
            parameter["description"] = described
