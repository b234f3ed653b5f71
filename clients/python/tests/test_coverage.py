"""The SDK covers the server's contract: every in-scope operation of the running server's
/openapi.json has a method on both clients, and every schema those operations use has a model
with the same fields."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, Iterator, List, Set, Tuple

import httpx
import pytest

import contextiq
from contextiq import HELPERS, OPERATIONS
from contextiq._operations import IDEMPOTENT, SCHEMAS, in_scope
from support import Server

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@pytest.fixture(scope="module")
def document(server: Server) -> Dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)
    response.raise_for_status()
    return response.json()


def _operations(document: Dict[str, Any]) -> Dict[Tuple[str, str], Dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items() if in_scope(path)
        for method, operation in item.items() if method in METHODS
    }


def _resolve(root: Any, dotted: str) -> Any:
    target = root
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def test_every_operation_of_the_document_is_in_the_table(document: Dict[str, Any]) -> None:
    documented = set(_operations(document))
    assert documented, "the document lists no in-scope operation"
    assert documented - set(OPERATIONS) == set(), "operations the SDK does not cover"
    assert set(OPERATIONS) - documented == set(), "table entries the server does not serve"
    # The Agent Engine surface is the one part left out, on purpose.
    left_out = {path for path in document["paths"] if not in_scope(path)}
    assert all(path.startswith("/v1beta1/") for path in left_out), left_out


@pytest.mark.parametrize("client_class", [contextiq.ContextIQ, contextiq.AsyncContextIQ])
def test_every_table_entry_is_a_method(client_class: Any) -> None:
    client = client_class(base_url="http://sdk.test")
    asynchronous = client_class is contextiq.AsyncContextIQ
    for name in list(OPERATIONS.values()) + list(HELPERS):
        method = _resolve(client, name)
        assert callable(method), name
        if asynchronous:
            assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name
        else:
            assert not inspect.iscoroutinefunction(method) and not inspect.isasyncgenfunction(method), name
    for operation in HELPERS.values():
        assert operation in OPERATIONS, operation
    assert IDEMPOTENT <= set(OPERATIONS)


@pytest.mark.parametrize("client_class", [contextiq.ContextIQ, contextiq.AsyncContextIQ])
def test_every_public_method_is_in_the_table(client_class: Any) -> None:
    """The reverse: no public method of a resource that the tables do not account for."""
    client = client_class(base_url="http://sdk.test")
    listed = set(OPERATIONS.values()) | set(HELPERS)
    for resource in ("sessions", "memories", "jobs", "keys"):
        for name, member in inspect.getmembers(getattr(client, resource)):
            if not name.startswith("_") and callable(member):
                assert f"{resource}.{name}" in listed, f"{resource}.{name}"


def test_the_two_clients_have_the_same_signatures() -> None:
    sync, asynchronous = contextiq.ContextIQ(base_url="http://sdk.test"), contextiq.AsyncContextIQ(base_url="http://sdk.test")
    for name in list(OPERATIONS.values()) + list(HELPERS):
        a = inspect.signature(_resolve(sync, name))
        b = inspect.signature(_resolve(asynchronous, name))
        assert list(a.parameters) == list(b.parameters), name


def _schema_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[1]
        for value in node.values():
            yield from _schema_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_refs(value)


def _used_schemas(document: Dict[str, Any]) -> Set[str]:
    schemas = document["components"]["schemas"]
    pending: List[str] = [name for op in _operations(document).values() for name in _schema_refs(op)]
    seen: Set[str] = set()
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(_schema_refs(schemas[name]))
    return seen


def _properties(schemas: Dict[str, Any], schema: Dict[str, Any]) -> Tuple[Set[str], Set[str]]:
    """The property names and the required ones of an object schema (allOf merged)."""
    properties: Set[str] = set(schema.get("properties", {}))
    required: Set[str] = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            part = schemas[part["$ref"].rsplit("/", 1)[1]]
        more, more_required = _properties(schemas, part)
        properties |= more
        required |= more_required
    return properties, required


def test_every_schema_has_a_model(document: Dict[str, Any]) -> None:
    used = _used_schemas(document)
    assert used - set(SCHEMAS) == set(), "schemas without an SDK model"
    assert set(SCHEMAS) - used == set(), "models of schemas the in-scope operations no longer use"
    for names in SCHEMAS.values():
        for name in names:
            assert hasattr(contextiq, name), name


def test_models_have_the_schemas_fields(document: Dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for schema_name, (model_name, *others) in SCHEMAS.items():
        schema = schemas[schema_name]
        if others or "oneOf" in schema:
            continue  # a union: each of its shapes is checked under its own schema
        properties, required = _properties(schemas, schema)
        if not properties:
            continue  # a string enum or a free-form map
        model = getattr(contextiq, model_name)
        if isinstance(model, type) and issubclass(model, BaseException):
            for name in properties:
                attribute = "type" if name == "type" else name
                assert hasattr(model(400, "x"), attribute), (schema_name, name)
        elif dataclasses.is_dataclass(model):
            fields = {f.name for f in dataclasses.fields(model)} - {"raw"}
            assert fields == properties, (schema_name, fields ^ properties)
        else:
            keys = set(model.__required_keys__) | set(model.__optional_keys__)
            assert keys == properties, (schema_name, keys ^ properties)
            assert set(model.__required_keys__) == required, (schema_name, model.__required_keys__, required)
