"""In-memory object store: one sorted table per resource, one global resourceVersion.

Built for 10k nodes / 100k pods. Each entry caches its JSON bytes (rebuilt lazily
after a write) so GET and list pages are byte joins, never re-serialisation or deep
copies; each table keeps its keys (``namespace/name`` or ``name``) sorted, so a
namespace is a bisect range and a page is a slice. Every write replaces the entry's
dict wholesale: stored dicts are never mutated in place, so a reader holding one is
safe. One re-entrant lock serialises writes and page assembly.

Pagination resumes *after the last key returned* (the continue token carries it).
Objects present for the whole walk are returned exactly once; objects created or
deleted meanwhile may or may not appear, and each page reports the current
resourceVersion rather than a snapshot's (the real server serves a consistent
snapshot from etcd).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from joulie_testbed.emulator import errors, events, resources, selection

Obj = dict[str, Any]
#: The field path lists can look up through an index instead of a scan (pods only).
NODE_NAME = "spec.nodeName"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


@dataclass(slots=True)
class Entry:
    """A stored object and its cached serialisations.

    ``bare`` is the JSON without apiVersion and kind: a list item of a built-in kind,
    which the real server sends that way, is these bytes as they are. The full body
    (GET, write answers, custom-resource list items) is built from it once, on demand.
    """

    obj: Obj
    raw: bytes | None = None
    bare: bytes | None = None

    def _encode(self) -> bytes:
        obj = self.obj
        bare = dumps({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        self.bare = bare
        return bare

    def body(self) -> bytes:
        if self.raw is None:
            bare = self.bare if self.bare is not None else self._encode()
            typed = {k: self.obj[k] for k in ("apiVersion", "kind") if k in self.obj}
            if not typed:
                self.raw = bare
            else:
                prefix = dumps(typed)
                self.raw = prefix[:-1] + (b"," + bare[1:] if len(bare) > 2 else b"}")
        return self.raw

    def item(self, *, bare: bool) -> bytes:
        """The bytes of a list item; ``bare`` drops apiVersion and kind (built-in kinds)."""
        if not bare:
            return self.body()
        return self.bare if self.bare is not None else self._encode()

    def copy(self) -> Obj:
        """A private deep copy (parsing the cached bytes is the cheapest deep copy)."""
        result: Obj = json.loads(self.body())
        return result


@dataclass
class _Table:
    keys: list[str] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)
    #: Bumped by every write; a field index is valid for the version it was built at.
    version: int = 0
    indexes: dict[str, tuple[int, dict[str, list[str]]]] = field(default_factory=dict)

    def put(self, key: str, entry: Entry) -> None:
        if key not in self.entries:
            bisect.insort(self.keys, key)
        self.entries[key] = entry
        self.version += 1

    def pop(self, key: str) -> Entry:
        entry = self.entries.pop(key)
        del self.keys[bisect.bisect_left(self.keys, key)]
        self.version += 1
        return entry

    def index(self, path: str) -> dict[str, list[str]]:
        """Keys by the string value of ``path`` (missing: ''), in key order; built lazily
        and rebuilt after any write (one pass, instead of one scan per list request)."""
        built = self.indexes.get(path)
        if built is not None and built[0] == self.version:
            return built[1]
        by_value: dict[str, list[str]] = {}
        entries = self.entries
        for key in self.keys:
            by_value.setdefault(selection.field_value(entries[key].obj, path), []).append(key)
        self.indexes[path] = (self.version, by_value)
        return by_value


@dataclass
class Page:
    """One list page: serialised items plus the list metadata to send with them."""

    resource_version: str
    items: list[bytes]
    continue_key: str | None
    remaining: int | None


def encode_continue(key: str, rv: str) -> str:
    raw = dumps({"v": "emulator/v1", "rv": rv, "start": key})
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str, *, compacted: int = 0) -> str:
    """The last key of the previous page; 400 for anything not minted here, 410 Expired
    when the token's resourceVersion predates the last ``Store.compact()`` (as etcd's
    compaction expires a real server's tokens). rv ``-1`` continues at the latest."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        key, rv = data["start"], int(data["rv"])
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise errors.bad_request(f"continue key is not valid: {e}") from e
    if not isinstance(key, str):
        raise errors.bad_request("continue key is not valid: start is not a string")
    if 0 <= rv < compacted:
        raise errors.expired_continue(encode_continue(key, "-1"))
    return key


class Store:
    """Objects by resource; all methods are thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rv = 0
        #: resourceVersion of the last compaction: older continue tokens answer 410.
        self.compacted = 0
        self._tables: dict[str, _Table] = {r.storage_key: _Table() for r in resources.ALL}
        #: Every change, in resourceVersion order, for watches (watch.py).
        self.events = events.EventLog()

    def _emit(self, res: resources.Resource, kind: str, entry: Entry) -> None:
        self.events.append(
            int(entry.obj["metadata"]["resourceVersion"]),
            res.storage_key,
            kind,
            entry.obj,
            entry.body(),
        )

    # --- bookkeeping ---------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def compact(self) -> None:
        """Forget history up to now, like an etcd compaction: older list tokens expire."""
        with self.lock:
            self.compacted = self._rv
            self.events.compact(self._rv)  # watches resuming from before now get 410

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _stamp_new(self, obj: Obj, *, dry_run: bool) -> None:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        if not dry_run:
            meta["resourceVersion"] = self._next_rv()

    def _stamp_update(self, obj: Obj, old: Obj, *, dry_run: bool) -> None:
        meta, old_meta = obj["metadata"], old["metadata"]
        for kept in ("uid", "creationTimestamp"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
        generation = old_meta.get("generation", 1)
        meta["generation"] = generation + 1 if obj.get("spec") != old.get("spec") else generation
        meta["resourceVersion"] = old_meta.get("resourceVersion") if dry_run else self._next_rv()

    # --- reads ---------------------------------------------------------------------------

    def get(self, res: resources.Resource, namespace: str | None, name: str) -> Entry | None:
        with self.lock:
            return self._tables[res.storage_key].entries.get(key_of(namespace, name))

    def require(self, res: resources.Resource, namespace: str | None, name: str) -> Entry:
        entry = self.get(res, namespace, name)
        if entry is None:
            raise errors.not_found(res, name)
        return entry

    def pods_on_node(self, node: str) -> list[Entry]:
        """Pods whose spec.nodeName is ``node`` (through the field index)."""
        with self.lock:
            table = self._tables[resources.PODS.storage_key]
            return [table.entries[k] for k in table.index(NODE_NAME).get(node, [])]

    def count(self, res: resources.Resource) -> int:
        with self.lock:
            return len(self._tables[res.storage_key].keys)

    def objects(self, res: resources.Resource, namespace: str | None = None) -> list[Entry]:
        with self.lock:
            table = self._tables[res.storage_key]
            lo, hi = self._bounds(table, namespace)
            return [table.entries[k] for k in table.keys[lo:hi]]

    @staticmethod
    def _bounds(table: _Table, namespace: str | None) -> tuple[int, int]:
        if not namespace:
            return 0, len(table.keys)
        # "/" + 1 == "0": every "ns/..." key sorts in [ns/, ns0).
        return (
            bisect.bisect_left(table.keys, namespace + "/"),
            bisect.bisect_left(table.keys, namespace + "0"),
        )

    def list_page(
        self,
        res: resources.Resource,
        *,
        namespace: str | None,
        match: Callable[[Obj], bool] | None,
        limit: int,
        after: str | None,
        index: tuple[str, str] | None = None,
    ) -> Page:
        """Up to ``limit`` (0: all) matching items in key order, starting after ``after``.

        ``index`` = (field path, value) promises that every match has that value, so
        only the keys the table's index holds for it are checked (same page, faster).
        """
        with self.lock:
            table = self._tables[res.storage_key]
            if index is not None:
                return self._indexed_page(
                    table, index, namespace, match, limit, after, bare=not res.custom
                )
            lo, hi = self._bounds(table, namespace)
            if after is not None:
                lo = max(lo, bisect.bisect_right(table.keys, after))
            keys, entries = table.keys, table.entries
            bare = not res.custom
            items: list[bytes] = []
            last = lo
            for i in range(lo, hi):
                entry = entries[keys[i]]
                if match is None or match(entry.obj):
                    items.append(entry.item(bare=bare))
                    if limit and len(items) == limit:
                        last = i + 1
                        break
            else:
                last = hi
            more = bool(limit) and len(items) == limit and last < hi
            return Page(
                resource_version=self.resource_version,
                items=items,
                continue_key=keys[last - 1] if more else None,
                remaining=(hi - last) if more and match is None else None,
            )

    def _indexed_page(
        self,
        table: _Table,
        index: tuple[str, str],
        namespace: str | None,
        match: Callable[[Obj], bool] | None,
        limit: int,
        after: str | None,
        *,
        bare: bool,
    ) -> Page:
        """list_page over the index's candidates; same items, token and ``more`` as a scan."""
        candidates = table.index(index[0]).get(index[1], [])
        lo, hi = self._bounds(table, namespace)
        if after is not None:
            lo = max(lo, bisect.bisect_right(table.keys, after))
        first = bisect.bisect_left(candidates, table.keys[lo]) if lo < hi else len(candidates)
        items: list[bytes] = []
        last_key: str | None = None
        for key in candidates[first:]:
            if bisect.bisect_left(table.keys, key) >= hi:
                break
            entry = table.entries[key]
            if match is None or match(entry.obj):
                items.append(entry.item(bare=bare))
                if limit and len(items) == limit:
                    last_key = key
                    break
        # As a scan: more when the page is full and any key (matching or not) follows.
        more = last_key is not None and bisect.bisect_right(table.keys, last_key) < hi
        return Page(
            resource_version=self.resource_version,
            items=items,
            continue_key=last_key if more else None,
            remaining=None,
        )

    # --- writes --------------------------------------------------------------------------

    def create(self, res: resources.Resource, obj: Obj, *, dry_run: bool = False) -> Entry:
        """Insert a new object (stamping uid, creationTimestamp, resourceVersion)."""
        meta = obj["metadata"]
        key = key_of(meta.get("namespace"), meta["name"])
        with self.lock:
            table = self._tables[res.storage_key]
            if key in table.entries:
                raise errors.already_exists(res, meta["name"])
            self._stamp_new(obj, dry_run=dry_run)
            entry = Entry(obj)
            if not dry_run:
                table.put(key, entry)
                self._emit(res, "ADDED", entry)
            return entry

    def update(
        self,
        res: resources.Resource,
        obj: Obj,
        *,
        expected_rv: str | None,
        dry_run: bool = False,
        prepare: Callable[[Obj, Obj], None] | None = None,
    ) -> Entry:
        """Replace an existing object; 409 when ``expected_rv`` is given and stale.

        ``prepare(new, old)`` runs under the lock, e.g. to carry the old status over.
        """
        meta = obj["metadata"]
        name = meta["name"]
        key = key_of(meta.get("namespace"), name)
        with self.lock:
            table = self._tables[res.storage_key]
            old = table.entries.get(key)
            if old is None:
                raise errors.not_found(res, name)
            if expected_rv is not None and expected_rv != old.obj["metadata"].get(
                "resourceVersion"
            ):
                raise errors.conflict(res, name)
            if prepare is not None:
                prepare(obj, old.obj)
            self._stamp_update(obj, old.obj, dry_run=dry_run)
            entry = Entry(obj)
            if not dry_run:
                table.entries[key] = entry
                table.version += 1
                self._emit(res, "MODIFIED", entry)
            return entry

    def delete(
        self,
        res: resources.Resource,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Entry:
        with self.lock:
            table = self._tables[res.storage_key]
            key = key_of(namespace, name)
            entry = table.entries.get(key)
            if entry is None:
                raise errors.not_found(res, name)
            meta = entry.obj["metadata"]
            for field_name in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field_name)
                if wanted is not None and wanted != meta.get(field_name):
                    raise errors.conflict(
                        res,
                        name,
                        f"Precondition failed: {field_name} in precondition: {wanted}, "
                        f"{field_name} in object meta: {meta.get(field_name)}",
                        by_kind=True,
                    )
            if not dry_run:
                table.pop(key)
                self._emit_deleted(res, entry)
            return entry

    def put(self, res: resources.Resource, obj: Obj) -> Entry:
        """Upsert without admission checks (out-of-band test helper)."""
        meta = obj.setdefault("metadata", {})
        key = key_of(meta.get("namespace"), meta["name"])
        with self.lock:
            old = self._tables[res.storage_key].entries.get(key)
            if old is None:
                self._stamp_new(obj, dry_run=False)
            else:
                self._stamp_update(obj, old.obj, dry_run=False)
            entry = Entry(obj)
            self._tables[res.storage_key].put(key, entry)
            self._emit(res, "ADDED" if old is None else "MODIFIED", entry)
            return entry

    def mutate(
        self,
        res: resources.Resource,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], None],
    ) -> Entry:
        """Apply ``change`` to a private copy and store it atomically (out-of-band)."""
        with self.lock:
            obj = self.require(res, namespace, name).copy()
            change(obj)
            return self.put(res, obj)

    def load(self, res: resources.Resource, objs: Iterable[Obj], *, encode: bool = True) -> int:
        """Bulk insert or replace, taking ownership of the dicts; one sort at the end.

        ``encode`` serialises now, so the first list is as fast as the next ones.
        """
        count = 0
        with self.lock:
            table = self._tables[res.storage_key]
            new_keys = False
            stamp = now_rfc3339()
            for obj in objs:
                obj.setdefault("apiVersion", res.api_version)
                obj.setdefault("kind", res.kind)
                meta = obj["metadata"]
                key = key_of(meta.get("namespace"), meta["name"])
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", stamp)
                meta.setdefault("generation", 1)
                meta["resourceVersion"] = self._next_rv()
                kind = "MODIFIED" if key in table.entries else "ADDED"
                new_keys = new_keys or kind == "ADDED"
                entry = Entry(obj)
                if encode:
                    entry.item(bare=not res.custom)
                table.entries[key] = entry
                self._emit(res, kind, entry)
                count += 1
            table.version += 1
            if new_keys:
                table.keys = sorted(table.entries)
        return count

    def clear(self) -> None:
        with self.lock:
            self._tables = {r.storage_key: _Table() for r in resources.ALL}
            self.events.compact(self._rv)  # no watch can resume across a wipe

    def _emit_deleted(self, res: resources.Resource, entry: Entry) -> None:
        """A DELETED event carries the object at the deletion's resourceVersion."""
        obj = entry.copy()
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(res, "DELETED", Entry(obj))
