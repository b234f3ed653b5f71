"""LangGraph's long-term memory store (`BaseStore`) on a ContextIQ server.

`ContextIQStore` keeps every item of a LangGraph store as one ContextIQ memory:

- the namespace is the memory's scope, one scope key per position (`scope_keys` names the
  first positions, the others are `ns<i>`), so `("u1", "memories")` with
  `scope_keys=("user_id",)` is the scope `{"user_id": "u1", "ns1": "memories"}`;
- the key is the memory's `topic` (the one exact-match field the native list filters on, so a
  `get` is one request) and, with the value, lives in `metadata["langgraph"]`, which is what
  the store trusts;
- the value's text (the store's `index` fields, LangGraph's `IndexConfig.fields`) is the
  memory's `fact`: what the server embeds and ranks in its hybrid search.

Every operation is a plan (a generator of `_Call`s) run by a synchronous or an asynchronous
driver, so the sync and async store share one implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Optional, TypeGuard, TypeVar, Union

from contextiq import AsyncContextIQ, ContextIQ, Memory, PermissionDeniedError
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    tokenize_path,
)

__all__ = ["ContextIQStore", "NamespaceForbiddenError", "METADATA_KEY"]
__version__ = "0.1.0"

METADATA_KEY = "langgraph"
"""The memory metadata key holding `{"key", "value", "indexed"}`: marks the store's memories."""

# Limits of the server (`/openapi.json`): a scope has 1 to 32 keys of at most 64 characters and
# values of 1 to 256; a topic is 1 to 128 characters; a fact or a query at most 4000; a page
# or a search at most 100; an Agent Engine list filter at most 2000 characters.
_MAX_DEPTH = 32
_MAX_LABEL = 256
_MAX_TOPIC = 128
_MAX_TEXT = 4000
_MAX_PAGE = 100
_MAX_FILTER = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCOPE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_POSITIONAL = re.compile(r"^ns(\d+)$")
_HASHED_TOPIC = "langgraph-key-sha256:"

T = TypeVar("T")


@dataclass(frozen=True)
class _Call:
    """One request of a plan: an SDK memories method (`kind`) and its arguments, or `scan`."""

    kind: Literal["list", "create", "update", "delete", "search", "scan"]
    args: dict[str, Any]
    # The namespace the request acts on, to name it in a 403 (None: no single namespace).
    namespace: Optional[tuple[str, ...]] = None


Request = Union[_Call, list[_Call]]
# A plan yields a request (or a list of them, which may run concurrently), receives the
# answer (or the list of answers), and returns its result.
Plan = Generator[Request, Any, T]


class NamespaceForbiddenError(PermissionDeniedError):
    """The server refused (403) to write a namespace whose scope is outside the credential's.

    A subclass of the SDK's `PermissionDeniedError` (so of `ContextIQError`), naming the
    namespace and the scope it maps to. Reads of such a namespace do not raise: the server
    answers them as it answers an empty scope (see the README).
    """

    def __init__(self, namespace: tuple[str, ...], scope: Mapping[str, str], error: PermissionDeniedError) -> None:
        self.namespace = namespace
        self.scope = dict(scope)
        super().__init__(
            status=error.status,
            code=error.code,
            detail=error.detail,
            field=error.field,
            title=error.title,
            type=error.type,
            correlation_id=error.correlation_id,
            response=error.response,
            body=error.body,
        )

    def _message(self) -> str:
        return (
            f"namespace {self.namespace!r} is the ContextIQ scope {self.scope!r}, outside the reach of this "
            f"store's credential ({self.status} {self.code}: {self.detail})"
        )


@dataclass(frozen=True)
class _Record:
    """One of the store's memories, as the native API or the Agent Engine list shows it."""

    memory_id: str
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    indexed: bool
    created_at: datetime
    updated_at: datetime
    # The memory's whole metadata (native reads only), kept on overwrite.
    metadata: dict[str, Any] = field(default_factory=dict)

    def item(self) -> Item:
        return Item(value=self.value, key=self.key, namespace=self.namespace,
                    created_at=self.created_at, updated_at=self.updated_at)

    def search_item(self, score: Optional[float] = None) -> SearchItem:
        return SearchItem(namespace=self.namespace, key=self.key, value=self.value,
                          created_at=self.created_at, updated_at=self.updated_at, score=score)


class _ScopeMapping:
    """A namespace tuple <-> a ContextIQ scope, one scope key per position."""

    def __init__(self, scope_keys: Sequence[str]) -> None:
        names = list(scope_keys)
        if len(names) > _MAX_DEPTH:
            raise ValueError(f"scope_keys: at most {_MAX_DEPTH} names (a scope has at most {_MAX_DEPTH} keys)")
        for position, name in enumerate(names):
            # Filter paths of the Agent Engine list are dotted words: keep names to identifiers.
            if not isinstance(name, str) or not _SCOPE_KEY.match(name):
                raise ValueError(f"scope_keys: {name!r} is not a name of letters, digits and '_' (1 to 64)")
            positional = _POSITIONAL.match(name)
            # `ns<j>` names position j; elsewhere it would make two namespaces one scope.
            if positional and int(positional.group(1)) != position:
                raise ValueError(f"scope_keys: {name!r} is the default name of position {positional.group(1)}")
        if len(set(names)) != len(names):
            raise ValueError(f"scope_keys: names repeat in {names!r}")
        self.names = tuple(names)
        self._positions = {name: position for position, name in enumerate(names)}

    def name(self, position: int) -> str:
        return self.names[position] if position < len(self.names) else f"ns{position}"

    def position(self, name: str) -> Optional[int]:
        if name in self._positions:
            return self._positions[name]
        positional = _POSITIONAL.match(name)
        if positional and int(positional.group(1)) >= len(self.names) and str(int(positional.group(1))) == positional.group(1):
            return int(positional.group(1))
        return None

    def scope(self, namespace: tuple[str, ...]) -> dict[str, str]:
        """The scope of a namespace; InvalidNamespaceError for one no scope can hold."""
        if not namespace:
            raise InvalidNamespaceError("Namespace cannot be empty.")
        if len(namespace) > _MAX_DEPTH:
            raise InvalidNamespaceError(f"{namespace!r}: a ContextIQ scope holds at most {_MAX_DEPTH} labels")
        for label in namespace:
            _check_label(label, namespace)
        return {self.name(position): label for position, label in enumerate(namespace)}

    def namespace(self, scope: Mapping[str, str]) -> Optional[tuple[str, ...]]:
        """The namespace of a scope, or None for a scope this mapping does not produce."""
        labels: dict[int, str] = {}
        for name, label in scope.items():
            position = self.position(name)
            if position is None:
                return None
            labels[position] = label
        if not labels or set(labels) != set(range(len(labels))):
            return None
        return tuple(labels[position] for position in range(len(labels)))

    def list_filter(self, path: tuple[str, ...], wildcards: bool) -> str:
        """An AIP-160 filter of the Agent Engine list for the store's memories under `path`.

        `field:""` ("has" an empty text) holds when the field exists. The filter only narrows
        what the server sends: every record is checked again here, so a term that does not fit
        in the filter's length limit is left out, not lost.
        """
        terms = [f'metadata.{METADATA_KEY}:""']
        fixed = [(position, label) for position, label in enumerate(path[:_MAX_DEPTH])
                 if not (wildcards and label == "*")]
        if not fixed:
            terms.append(f'scope.{self.name(0)}:""')
        for position, label in fixed:
            escaped = label.replace("\\", "\\\\").replace('"', '\\"')
            terms.append(f'scope.{self.name(position)}="{escaped}"')
        text = terms[0]
        for term in terms[1:]:
            if len(text) + len(term) + 5 > _MAX_FILTER:
                break
            text += " AND " + term
        return text


def _check_label(label: Any, namespace: tuple[str, ...]) -> None:
    """LangGraph's label rules, and a scope value's (1 to 256 characters, no control
    characters, not only whitespace)."""
    if not isinstance(label, str) or not label:
        raise InvalidNamespaceError(f"{namespace!r}: namespace labels are non-empty strings")
    if "." in label or "\x00" in label:
        raise InvalidNamespaceError(f"{namespace!r}: namespace labels cannot contain '.' or NUL")
    if len(label) > _MAX_LABEL or _CONTROL.search(label) or label.isspace():
        raise InvalidNamespaceError(
            f"{namespace!r}: label {label[:40]!r} cannot be a ContextIQ scope value (1 to {_MAX_LABEL} "
            "characters, no control characters, not only whitespace)")


def _validate_op(op: Op) -> None:
    """The label checks of BaseStore's methods, for ops given to `batch` directly."""
    if isinstance(op, (GetOp, PutOp)):
        paths = [op.namespace]
    elif isinstance(op, SearchOp):
        paths = [op.namespace_prefix]
    elif isinstance(op, ListNamespacesOp):
        paths = [condition.path for condition in op.match_conditions or ()]
    else:
        raise ValueError(f"Unknown operation type: {type(op)}")
    for path in paths:
        for label in path:
            if not isinstance(label, str) or not label or "." in label or "\x00" in label:
                raise InvalidNamespaceError(f"Invalid namespace label {label!r} in {path!r}")


def _topic(key: str) -> str:
    """The memory topic of a key: the key itself when a topic can hold it, else its hash.

    The topic only finds candidates (GET /memories?topic=...): the key in the metadata decides,
    so a literal key that looks like a hashed one cannot be confused with it.
    """
    if 1 <= len(key) <= _MAX_TOPIC and not key.isspace() and not _CONTROL.search(key):
        return key
    return _HASHED_TOPIC + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _text_leaves(value: Any) -> list[str]:
    """The strings, numbers and booleans of a JSON value, in order: the readable text of `$`."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _text_leaves(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _text_leaves(item)]
    return []


def _parse_time(text: str) -> datetime:
    """An RFC 3339 time of the Agent Engine view (`...Z`, 0 to 9 fraction digits)."""
    text = text.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$", text)
    if match:
        # Python before 3.11 takes exactly 0, 3 or 6 fraction digits.
        fraction = (match.group(2) or "").ljust(6, "0")[:6]
        text = f"{match.group(1)}.{fraction}{match.group(3)}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _does_match(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """LangGraph's namespace match (InMemoryStore's): prefix or suffix, `*` matches any label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    return all(wanted == "*" or label == wanted for label, wanted in pairs)


def _compare(item_value: Any, wanted: Any) -> bool:
    """LangGraph's filter semantics (InMemoryStore's): exact match, nested dicts and lists,
    and the operators `$eq $ne $gt $gte $lt $lte`."""
    if isinstance(wanted, dict):
        if any(name.startswith("$") for name in wanted):
            return all(_operator(item_value, name, operand) for name, operand in wanted.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare(item_value.get(name), operand) for name, operand in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (isinstance(item_value, (list, tuple)) and len(item_value) == len(wanted)
                and all(_compare(left, right) for left, right in zip(item_value, wanted)))
    return bool(item_value == wanted)


def _operator(value: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(value == operand)
    if operator == "$ne":
        return bool(value != operand)
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        if value is None:
            return False
        left, right = float(value), float(operand)
        return {"$gt": left > right, "$gte": left >= right, "$lt": left < right, "$lte": left <= right}[operator]
    raise ValueError(f"Unsupported operator: {operator}")


def _matches_filter(record: _Record, wanted: Optional[Mapping[str, Any]]) -> bool:
    return not wanted or all(_compare(record.value.get(name), operand) for name, operand in wanted.items())


class ContextIQStore(BaseStore):
    """LangGraph's long-term memory store on a ContextIQ server (one item = one memory).

    Args:
        base_url: the server (default: env `CONTEXTIQ_BASE_URL`, else `http://127.0.0.1:8000`).
        api_key: an API key (default: env `CONTEXTIQ_API_KEY`); or `token`, a JWT.
        engine: the reasoning engine (a partition of the org); None is the default engine.
        timeout: seconds for each HTTP request.
        client / async_client: SDK clients to use instead of the ones the store makes from the
            arguments above (the store does not close clients it was given). Given only
            `client`, the async methods run it in a thread; given only `async_client`, the
            sync methods raise.
        scope_keys: the scope key of each namespace position, first ones first; positions
            without a name are `ns<position>` (`ns0`, `ns1`, ...).
        index: LangGraph's `IndexConfig`; only `fields` is used (default `["$"]`, the value's
            text): the server embeds with its own model, so `dims` and `embed` are ignored.
        ttl: LangGraph's `TTLConfig`; `default_ttl` (minutes) is used. An item's TTL counts
            from its last write (ContextIQ's `ttl_seconds`): reads do not refresh it.
        search_subnamespaces: whether `search(prefix)` also reads namespaces under `prefix`
            (LangGraph's semantics; it lists the engine's memories under the prefix to find
            them). False: a search with a non-empty prefix reads exactly that namespace.
        purge_deletes: whether `delete` erases the memory and its history (`purge=true`);
            by default a deleted item's memory keeps its revisions and can be restored.
    """

    supports_ttl: bool = True

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        token: Optional[str] = None,
        engine: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        client: Optional[ContextIQ] = None,
        async_client: Optional[AsyncContextIQ] = None,
        scope_keys: Sequence[str] = (),
        index: Optional[IndexConfig] = None,
        ttl: Optional[TTLConfig] = None,
        search_subnamespaces: bool = True,
        purge_deletes: bool = False,
    ) -> None:
        self._settings: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "token": token,
                                          "engine": engine, "timeout": timeout}
        self._given_client = client
        self._given_async_client = async_client
        self._client: Optional[ContextIQ] = None
        self._async_client: Optional[AsyncContextIQ] = None
        self._async_loop: Optional[asyncio.AbstractEventLoop] = None
        given = client if client is not None else async_client
        # The Agent Engine path names the engine; the native API's default engine is `default`.
        self._engine: str = engine or (given.engine if given is not None else None) or "default"
        self._mapping = _ScopeMapping(scope_keys)
        self.index_config: Optional[IndexConfig] = dict(index) if index else None  # type: ignore[assignment]
        if index and index.get("embed") is not None:
            warnings.warn("ContextIQStore: index['embed'] is ignored, the ContextIQ server embeds with its own model",
                          stacklevel=2)
        fields = (index or {}).get("fields") or ["$"]
        self._fields: list[str] = list(fields)
        self.ttl_config = ttl
        self._search_subnamespaces = search_subnamespaces
        self._purge_deletes = purge_deletes

    # The mapping, for the native API

    def scope(self, namespace: tuple[str, ...]) -> dict[str, str]:
        """The ContextIQ scope of a namespace (InvalidNamespaceError if no scope can hold it)."""
        return self._mapping.scope(tuple(namespace))

    def namespace(self, scope: Mapping[str, str]) -> Optional[tuple[str, ...]]:
        """The namespace of a ContextIQ scope, or None for a scope this store's mapping never makes."""
        return self._mapping.namespace(scope)

    # Clients

    def _sync(self) -> ContextIQ:
        if self._given_client is not None:
            return self._given_client
        if self._given_async_client is not None:
            raise RuntimeError("this ContextIQStore was given only an async_client: use the async methods "
                               "(aget, aput, asearch, ...), or give it client= too")
        if self._client is None:
            self._client = ContextIQ(**self._settings)
        return self._client

    def _async(self) -> AsyncContextIQ:
        if self._given_async_client is not None:
            return self._given_async_client
        # An httpx.AsyncClient belongs to the event loop it first ran on: a store used from
        # several loops (asyncio.run twice, a test per loop) gets a client per loop.
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            self._async_client = AsyncContextIQ(**self._settings)
            self._async_loop = loop
        return self._async_client

    def close(self) -> None:
        """Closes the synchronous client the store made (not one it was given)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Closes the clients the store made (not ones it was given)."""
        if self._async_client is not None and self._async_loop is asyncio.get_running_loop():
            await self._async_client.aclose()
        self._async_client = None
        self.close()

    def __enter__(self) -> "ContextIQStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "ContextIQStore":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    # BaseStore

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plans, puts, results = self._prepare(ops)
        for index, plan in plans:
            results[index] = self._drive(plan)
        for plan in puts:
            self._drive(plan)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        if self._given_client is not None and self._given_async_client is None:
            return await asyncio.to_thread(self.batch, list(ops))
        plans, puts, results = self._prepare(ops)
        answers = await asyncio.gather(*(self._adrive(plan) for _, plan in plans))
        for (index, _), answer in zip(plans, answers):
            results[index] = answer
        await asyncio.gather(*(self._adrive(plan) for plan in puts))
        return results

    def _prepare(self, ops: Iterable[Op]) -> tuple[list[tuple[int, Plan[Any]]], list[Plan[None]], list[Result]]:
        """The plans of a batch: its reads, and its writes, last one per (namespace, key).

        As InMemoryStore and PostgresStore do, the reads of a batch run before its writes,
        and of several writes of one item the last wins.
        """
        reads: list[tuple[int, Plan[Any]]] = []
        writes: dict[tuple[tuple[str, ...], str], PutOp] = {}
        results: list[Result] = []
        for index, op in enumerate(ops):
            _validate_op(op)
            results.append(None)
            if isinstance(op, GetOp):
                reads.append((index, self._get(op)))
            elif isinstance(op, SearchOp):
                reads.append((index, self._search(op)))
            elif isinstance(op, ListNamespacesOp):
                reads.append((index, self._list_namespaces(op)))
            elif isinstance(op, PutOp):
                writes.pop((tuple(op.namespace), op.key), None)
                writes[(tuple(op.namespace), op.key)] = op
        return reads, [self._put(op) for op in writes.values()], results

    # Drivers

    def _drive(self, plan: Plan[T]) -> T:
        answer: Any = None
        try:
            while True:
                request = plan.send(answer)
                if isinstance(request, list):
                    answer = [self._call(call) for call in request]
                else:
                    answer = self._call(request)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, plan: Plan[T]) -> T:
        answer: Any = None
        try:
            while True:
                request = plan.send(answer)
                if isinstance(request, list):
                    answer = list(await asyncio.gather(*(self._acall(call) for call in request)))
                else:
                    answer = await self._acall(request)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _call(self, call: _Call) -> Any:
        try:
            return self._invoke(self._sync(), call)
        except PermissionDeniedError as error:
            raise self._forbidden(call, error) from error

    async def _acall(self, call: _Call) -> Any:
        try:
            return await self._invoke(self._async(), call)
        except PermissionDeniedError as error:
            raise self._forbidden(call, error) from error

    def _invoke(self, client: Union[ContextIQ, AsyncContextIQ], call: _Call) -> Any:
        """The SDK call of a request (a coroutine with the async client)."""
        if call.kind == "scan":
            # The SDK covers /api/v1 only, which has no list across scopes; the Agent Engine
            # list is one. `_json` is the SDK's own transport: its credentials, retries, errors.
            return client._json("GET", f"/v1beta1/reasoningEngines/{self._engine}/memories",
                                params=call.args["params"])
        return getattr(client.memories, call.kind)(**call.args)

    def _forbidden(self, call: _Call, error: PermissionDeniedError) -> PermissionDeniedError:
        """A 403 about the scope as NamespaceForbiddenError; others (a missing permission) as is.

        Both are `forbidden`; only the detail tells them apart ("the memory's scope is outside
        the credential's scope" against "the credential lacks the MEMORY_WRITE permission").
        """
        if call.namespace is None or isinstance(error, NamespaceForbiddenError) or "scope" not in (error.detail or ""):
            return error
        return NamespaceForbiddenError(call.namespace, self._mapping.scope(call.namespace), error)

    # Records

    def _record(self, memory: Memory) -> Optional[_Record]:
        """The item a native memory holds, or None for a memory the store did not write."""
        namespace = self._mapping.namespace(memory.scope)
        entry = memory.metadata.get(METADATA_KEY)
        if namespace is None or not _is_entry(entry):
            return None
        return _Record(memory_id=memory.id, namespace=namespace, key=entry["key"], value=entry["value"],
                       indexed=bool(entry.get("indexed", True)), created_at=memory.created_at,
                       updated_at=memory.updated_at, metadata=dict(memory.metadata))

    def _record_of_resource(self, resource: Mapping[str, Any]) -> Optional[_Record]:
        """The item of a memory as the Agent Engine list shows it (metadata values typed:
        an object is its JSON text in `stringValue`)."""
        namespace = self._mapping.namespace(resource.get("scope") or {})
        typed = (resource.get("metadata") or {}).get(METADATA_KEY)
        if namespace is None or not isinstance(typed, Mapping) or not isinstance(typed.get("stringValue"), str):
            return None
        try:
            entry = json.loads(typed["stringValue"])
        except ValueError:
            return None
        if not _is_entry(entry):
            return None
        return _Record(memory_id=str(resource.get("name", "")).rsplit("/", 1)[-1], namespace=namespace,
                       key=entry["key"], value=entry["value"], indexed=bool(entry.get("indexed", True)),
                       created_at=_parse_time(resource["createTime"]),
                       updated_at=_parse_time(resource["updateTime"]))

    def _fact(self, key: str, value: Mapping[str, Any], index: Union[Literal[False], list[str], None]) -> tuple[str, bool]:
        """The memory's fact (what the server embeds and ranks) and whether it is the value's
        text; an item not indexed (index=False, or no text at the fields) has its key as fact."""
        texts: list[str] = []
        if index is not False:
            for path in (index if index is not None else self._fields):
                if path == "$":
                    texts.extend(_text_leaves(value))
                else:
                    texts.extend(get_text_at_path(value, tokenize_path(path)))
        text = "\n".join(text for text in texts if text.strip())
        if text.strip():
            return text[:_MAX_TEXT], True
        return (key if key.strip() else "(no text)")[:_MAX_TEXT], False

    # Plans

    def _find(self, namespace: tuple[str, ...], key: str) -> Plan[list[_Record]]:
        """The memories of an item, newest first (one, unless concurrent first writes raced)."""
        scope = self._mapping.scope(namespace)
        found: list[_Record] = []
        cursor: Optional[str] = None
        while True:
            page = yield _Call("list", {"scope": scope, "topic": _topic(key), "limit": _MAX_PAGE, "cursor": cursor},
                               namespace)
            for memory in page.memories:
                record = self._record(memory)
                if record is not None and record.key == key and record.namespace == namespace:
                    found.append(record)
            if not page.next_cursor or page.next_cursor == cursor:
                return found
            cursor = page.next_cursor

    def _get(self, op: GetOp) -> Plan[Optional[Item]]:
        found = yield from self._find(tuple(op.namespace), op.key)
        return found[0].item() if found else None

    def _put(self, op: PutOp) -> Plan[None]:
        namespace = tuple(op.namespace)
        scope = self._mapping.scope(namespace)
        value: Optional[dict[str, Any]] = None
        if op.value is not None:
            value = dict(op.value)
            try:
                json.dumps(value)
            except (TypeError, ValueError) as error:
                raise TypeError(f"the value of {namespace!r}/{op.key!r} is not JSON: {error}") from error
        found = yield from self._find(namespace, op.key)
        if value is None:
            if found:
                yield [_Call("delete", {"memory_id": record.memory_id, "purge": self._purge_deletes}, namespace)
                       for record in found]
            return None
        fact, indexed = self._fact(op.key, value, op.index)
        entry = {"key": op.key, "value": value, "indexed": indexed}
        ttl_seconds = None if op.ttl is None else max(1, math.ceil(op.ttl * 60))
        if not found:
            yield _Call("create", {"scope": scope, "fact": fact, "topic": _topic(op.key),
                                   "metadata": {METADATA_KEY: entry}, "ttl_seconds": ttl_seconds}, namespace)
            return None
        newest, stale = found[0], found[1:]
        # Metadata others added to the memory stays; the store's entry is replaced.
        update: dict[str, Any] = {"memory_id": newest.memory_id, "fact": fact,
                                  "metadata": {**newest.metadata, METADATA_KEY: entry}}
        if ttl_seconds is None:
            update["expires_at"] = None  # an expiry of an earlier put does not outlive this one
        else:
            update["ttl_seconds"] = ttl_seconds
        # Duplicates (two first writes that raced) go: the newest is the item.
        yield [_Call("update", update, namespace)] + [
            _Call("delete", {"memory_id": record.memory_id, "purge": self._purge_deletes}, namespace)
            for record in stale]
        return None

    def _scan(self, path: tuple[str, ...], *, wildcards: bool, keep: Callable[[_Record], bool],
              enough: Optional[int] = None) -> Plan[list[_Record]]:
        """The store's records under `path` in every scope of the engine, newest first.

        The native API lists one scope at a time; the Agent Engine list (`GET
        /v1beta1/reasoningEngines/{engine}/memories`) reads every scope the credential
        reaches, filtered on the server. It scans the engine's memories: the cost of prefix
        searches and of list_namespaces.
        """
        condition = MatchCondition(match_type="prefix", path=path)
        params = {"filter": self._mapping.list_filter(path, wildcards), "pageSize": str(_MAX_PAGE)}
        found: list[_Record] = []
        while True:
            page = yield _Call("scan", {"params": dict(params)})
            for resource in page.get("memories") or []:
                record = self._record_of_resource(resource)
                if record is None:
                    continue
                under = _does_match(condition, record.namespace) if wildcards else \
                    record.namespace[:len(path)] == path
                if under and keep(record):
                    found.append(record)
            token = page.get("nextPageToken")
            if (enough is not None and len(found) >= enough) or not token or token == params.get("pageToken"):
                return found
            params["pageToken"] = token

    def _namespaces_to_search(self, prefix: tuple[str, ...]) -> Plan[list[tuple[str, ...]]]:
        if prefix and not self._search_subnamespaces:
            self._mapping.scope(prefix)  # an invalid namespace raises before any request
            return [prefix]
        records = yield from self._scan(prefix, wildcards=False, keep=lambda record: True)
        return sorted({record.namespace for record in records})

    def _search(self, op: SearchOp) -> Plan[list[SearchItem]]:
        prefix = tuple(op.namespace_prefix)
        if op.limit <= 0:
            return []
        wanted = op.offset + op.limit
        query = (op.query or "").strip()
        if not query:
            return (yield from self._listing(prefix, op.filter, op.offset, wanted))
        namespaces = yield from self._namespaces_to_search(prefix)
        if not namespaces:
            return []
        # The server's ranking is cut at top_k (at most 100) before a client-side filter, so a
        # filtered search asks for the most it can.
        top_k = _MAX_PAGE if op.filter else min(_MAX_PAGE, wanted)
        responses = yield [_Call("search", {"scope": self._mapping.scope(namespace), "query": query[:_MAX_TEXT],
                                            "top_k": top_k}, namespace) for namespace in namespaces]
        scored: list[tuple[float, int, _Record]] = []
        unscored: list[_Record] = []
        for response in responses:
            for result in response.results:
                record = self._record(result.memory)
                if record is None or not _matches_filter(record, op.filter):
                    continue
                if record.indexed:
                    scored.append((result.score, len(scored), record))
                else:
                    # A fact that is only the key is no match of the value's text: like
                    # InMemoryStore's items without vectors, these come last, without a score.
                    unscored.append(record)
        scored.sort(key=lambda entry: (-entry[0], entry[1]))
        ranked = [record.search_item(score) for score, _, record in scored]
        ranked += [record.search_item(None) for record in unscored]
        return ranked[op.offset:wanted]

    def _listing(self, prefix: tuple[str, ...], wanted_filter: Optional[dict[str, Any]], offset: int,
                 wanted: int) -> Plan[list[SearchItem]]:
        """A search without a query: the items under the prefix, newest first."""
        def keep(record: _Record) -> bool:
            return _matches_filter(record, wanted_filter)

        if prefix and not self._search_subnamespaces:
            scope = self._mapping.scope(prefix)
            found: list[_Record] = []
            cursor: Optional[str] = None
            while len(found) < wanted:
                page = yield _Call("list", {"scope": scope, "limit": _MAX_PAGE, "cursor": cursor}, prefix)
                found.extend(record for memory in page.memories
                             if (record := self._record(memory)) is not None and keep(record))
                if not page.next_cursor or page.next_cursor == cursor:
                    break
                cursor = page.next_cursor
        else:
            found = yield from self._scan(prefix, wildcards=False, keep=keep, enough=wanted)
        return [record.search_item() for record in found[offset:wanted]]

    def _list_namespaces(self, op: ListNamespacesOp) -> Plan[list[tuple[str, ...]]]:
        conditions = tuple(op.match_conditions or ())
        prefix = next((tuple(condition.path) for condition in conditions if condition.match_type == "prefix"), ())
        records = yield from self._scan(prefix, wildcards=True, keep=lambda record: True)
        namespaces = {record.namespace for record in records
                      if all(_does_match(condition, record.namespace) for condition in conditions)}
        if op.max_depth is not None:
            namespaces = {namespace[:op.max_depth] for namespace in namespaces}
        return sorted(namespaces)[op.offset:op.offset + op.limit]


def _is_entry(entry: Any) -> TypeGuard[Mapping[str, Any]]:
    """The store's metadata entry: `{"key": str, "value": dict, "indexed": bool}`."""
    return isinstance(entry, Mapping) and isinstance(entry.get("key"), str) and isinstance(entry.get("value"), dict)
