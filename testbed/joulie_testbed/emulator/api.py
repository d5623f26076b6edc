"""Kubernetes REST semantics: routes, verbs, preconditions, patches, lists, discovery.

Transport-free: ``Api.handle`` takes a parsed request and returns a status code,
JSON bytes and headers; server.py owns sockets, faults and latency. Held to a real
kube-apiserver by tests/envtest/test_conformance.py. Deliberate simplifications
(each also a difference from a real API server):

- deletes are immediate (no grace period, finalizers ignored); pods answer with
  the deleted object, every other kind with a Success Status;
- create keeps a provided ``status`` (handy for seeding); updates and patches of
  the main resource of nodes and pods keep the old status, and the ``/status``
  subresource changes status and metadata but never spec, like the real server;
- namespaces need not exist; pod specs are not immutable; no managedFields; no
  server-side defaults beyond a pod's phase; list ``resourceVersion`` is ignored;
- server-side apply (``application/apply-patch+yaml``) needs a fieldManager, creates
  a missing object and otherwise merges the applied configuration like a merge patch:
  no managedFields, no field ownership, no apply conflicts;
- ``watch`` is served by watch.py (server.py routes it there, never here).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from joulie_testbed.emulator import (
    conversion,
    errors,
    patching,
    resources,
    selection,
    store,
    validation,
)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_RV_REQUIRED = "Invalid value: 0x0: must be specified for an update"


@dataclass
class Request:
    """What the API layer needs of an HTTP request."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """A request against a resource: which object(s), and the Kubernetes verb."""

    res: resources.Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str

    @property
    def counter_resource(self) -> str:
        return self.res.plural if not self.subresource else f"{self.res.plural}/{self.subresource}"


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _verb(method: str, name: str | None, query: Mapping[str, str]) -> str:
    if method == "GET":
        if name:
            return "get"
        return "watch" if query.get("watch", "").lower() in ("1", "true") else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return _VERBS.get(method, method.lower())


def parse_route(method: str, path: str, query: Mapping[str, str]) -> Route | None:
    """Map a URL path to a Route; None when it names no served resource."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 3 and segs[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    res = resources.by_path(group, version, rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if res is None or (namespace and not res.namespaced):
        return None
    if res.namespaced and name and not namespace:
        return None
    verb = "watch" if watch else _verb(method, name, query)
    return Route(res, namespace, name, sub, verb)


def _json_body(req: Request) -> Any:
    try:
        return json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"the body of the request is not valid JSON: {e}") from e


_OPTIONS = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}


def _dry_run(req: Request) -> bool:
    value = req.query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        raise errors.invalid_options(
            _OPTIONS.get(req.method, "DeleteOptions"),
            "dryRun",
            "FieldValueNotSupported",
            f'Unsupported value: "{value}": supported values: "All"',
        )
    return True


def _out(res: resources.Resource, entry: store.Entry) -> bytes:
    """The stored object as ``res`` shows it (events.k8s.io events are converted)."""
    if res is resources.EVENTS_V1:
        return store.dumps(conversion.event_to_v1(entry.copy()))
    return entry.body()


def _copy(res: resources.Resource, entry: store.Entry) -> store.Obj:
    """A private copy of the stored object, as ``res`` shows it."""
    obj = entry.copy()
    return conversion.event_to_v1(obj) if res is resources.EVENTS_V1 else obj


def _success(res: resources.Resource, name: str, uid: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": res.plural, "uid": uid}
    if res.group:
        details["group"] = res.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


def _field_validation(req: Request) -> str:
    """The fieldValidation option (default Warn, as on the real server); 422 if unknown."""
    value = req.query.get("fieldValidation") or "Warn"
    if value not in _FIELD_VALIDATION:
        raise errors.invalid_options(
            _OPTIONS.get(req.method, "DeleteOptions"),
            "fieldValidation",
            "FieldValueNotSupported",
            f'Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"',
        )
    return value


def _warnings(mode: str, unknown: list[str]) -> dict[str, str]:
    """The Warning header the real server sends for pruned unknown fields (mode Warn)."""
    if mode != "Warn" or not unknown:
        return {}
    return {"Warning": ", ".join(f'299 - "unknown field \\"{u}\\""' for u in unknown)}


class Api:
    """Serves the REST resources of one Store."""

    def __init__(self, objects: store.Store) -> None:
        self.store = objects

    # --- custom resources and discovery --------------------------------------------------

    def schema(self, res: resources.Resource) -> dict[str, Any] | None:
        """The CRD schema of a custom resource; 404 while its CRD is not installed."""
        if not res.custom:
            return None
        crd = self.store.get(resources.CRDS, None, res.crd_name)
        if crd is None:
            raise errors.ApiError(404, "the server could not find the requested resource")
        return validation.crd_schema(crd.obj, res.version)

    def served(self) -> set[str]:
        keys = {r.key for r in resources.ALL if not r.custom}
        for res in resources.ALL:
            if res.custom and self.store.get(resources.CRDS, None, res.crd_name) is not None:
                keys.add(res.key)
        return keys

    def discovery(self, path: str) -> dict[str, Any] | None:
        segs = [s for s in path.split("/") if s]
        if segs == ["version"]:
            return resources.VERSION_INFO
        if segs == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if segs == ["api", "v1"]:
            return resources.resource_list("", "v1", served=self.served())
        if segs == ["apis"]:
            return resources.group_list(served=self.served())
        if len(segs) in (2, 3) and segs[0] == "apis":
            for group, version in resources.GROUP_VERSIONS:
                if (
                    segs[1] != group
                    or resources.resource_list(group, version, served=self.served()) is None
                ):
                    continue
                if len(segs) == 2:
                    return resources.api_group(group, version)
                if segs[2] == version:
                    return resources.resource_list(group, version, served=self.served())
        return None

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, req: Request, route: Route) -> Response:
        schema = self.schema(route.res)
        if route.subresource is not None and (
            route.subresource != "status" or not route.res.status_subresource
        ):
            # An unserved subresource reads like a missing object on the real server.
            raise errors.not_found(route.res, route.name or "")
        if route.verb == "list":
            return self._list(req, route)
        if route.verb == "get":
            assert route.name is not None
            entry = self.store.require(route.res, route.namespace, route.name)
            return Response(200, _out(route.res, entry))
        if route.verb == "create":
            if route.res.namespaced and not route.namespace:
                raise errors.ApiError(
                    405, f"create of {route.res.plural} needs a namespace in the path"
                )
            return self._create(req, route, schema)
        if route.verb == "update":
            return self._update(req, route, schema)
        if route.verb == "patch":
            return self._patch(req, route, schema)
        if route.verb == "delete":
            return self._delete(req, route)
        if route.verb == "watch":
            raise errors.ApiError(405, "watch is not supported by the joulie-tasks emulator")
        raise errors.ApiError(
            405, f"the server does not allow this method on the requested resource ({route.verb})"
        )

    # --- verbs ---------------------------------------------------------------------------

    def _list(self, req: Request, route: Route) -> Response:
        res = route.res
        labels = selection.parse_labels(req.query.get("labelSelector", ""))
        fields = selection.parse_fields(req.query.get("fieldSelector", ""), res)
        try:
            limit = max(0, int(req.query.get("limit") or 0))
        except ValueError as e:
            raise errors.bad_request(f"limit: invalid value {req.query.get('limit')!r}") from e
        token = req.query.get("continue")
        after = store.decode_continue(token, compacted=self.store.compacted) if token else None

        match = None
        if labels is not None or fields is not None:

            def match(obj: store.Obj) -> bool:
                if labels is not None and not labels(obj["metadata"].get("labels") or {}):
                    return False
                return fields is None or fields(obj)

        indexed = None
        if fields is not None and res is resources.PODS:
            value = selection.index_term(req.query.get("fieldSelector", ""), res, store.NODE_NAME)
            indexed = None if value is None else (store.NODE_NAME, value)
        page = self.store.list_page(
            res, namespace=route.namespace, match=match, limit=limit, after=after, index=indexed
        )
        meta: dict[str, Any] = {"resourceVersion": page.resource_version}
        if page.continue_key is not None:
            meta["continue"] = store.encode_continue(page.continue_key, page.resource_version)
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        head = store.dumps(
            {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta}
        )
        if res is resources.EVENTS_V1:
            page.items = [store.dumps(conversion.event_to_v1(json.loads(i))) for i in page.items]
        body = b"".join((head[:-1], b',"items":[', b",".join(page.items), b"]}"))
        return Response(200, body)

    def _object_body(self, req: Request, route: Route) -> store.Obj:
        obj = _json_body(req)
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        res = route.res
        if res.custom and not (obj.get("kind") and obj.get("apiVersion")):
            raise errors.bad_request("Object 'Kind' is missing in the request body")
        kind, api_version = (
            obj.setdefault("kind", res.kind),
            obj.setdefault("apiVersion", res.api_version),
        )
        if res.custom and api_version == res.api_version and kind != res.kind:
            # The real server answers a custom resource's wrong kind with 422 on "kind".
            name = str((obj.get("metadata") or {}).get("name") or "")
            why = f'Invalid value: "{kind}": must be {res.kind}'
            raise errors.ApiError(
                422,
                f'{kind}.{res.group} "{name}" is invalid: kind: {why}',
                details={
                    "name": name,
                    "group": res.group,
                    "kind": str(kind),
                    "causes": [errors.cause("FieldValueInvalid", "kind", why)],
                },
            )
        if (kind, api_version) != (res.kind, res.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) and kind ({kind}) do not match "
                f"the endpoint ({res.api_version}, {res.kind})"
            )
        meta = obj.setdefault("metadata", {})
        validation.check_string_maps(obj)
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != route.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = route.namespace
        else:
            meta.pop("namespace", None)
        if route.name is not None:
            meta.setdefault("name", route.name)
            if meta["name"] != route.name:
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the "
                    f"URL ({route.name})"
                )
        return obj

    def _create(self, req: Request, route: Route, schema: dict[str, Any] | None) -> Response:
        obj = self._object_body(req, route)
        meta = obj["metadata"]
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        mode = _field_validation(req)
        if route.res.custom and route.res.status_subresource:
            # A custom resource with the status subresource starts without a status:
            # the real server drops it on create (nodes and pods keep theirs).
            obj.pop("status", None)
        self._default(route.res, obj)
        strict = "body" if mode == "Strict" else None
        unknown = validation.admit(route.res, obj, schema=schema, strict=strict)
        if route.res.custom and meta.get("resourceVersion"):
            # A custom resource keeps it to the storage layer, which fails without a reason.
            raise errors.ApiError(
                500, "resourceVersion should not be set on objects to be created", reason=""
            )
        if route.res is resources.EVENTS_V1:
            obj = conversion.event_to_core(obj)
        entry = self.store.create(route.res, obj, dry_run=_dry_run(req))
        return Response(201, _out(route.res, entry), _warnings(mode, unknown))

    def _update(self, req: Request, route: Route, schema: dict[str, Any] | None) -> Response:
        obj = self._object_body(req, route)
        rv = obj["metadata"].get("resourceVersion") or None
        mode = _field_validation(req)
        return self._replace(
            route, obj, expected_rv=rv, schema=schema, dry_run=_dry_run(req), mode=mode
        )

    def _replace(
        self,
        route: Route,
        obj: store.Obj,
        *,
        expected_rv: str | None,
        schema: dict[str, Any] | None,
        dry_run: bool,
        mode: str = "Warn",
        patch: bool = False,
    ) -> Response:
        res = route.res
        strict = None if mode != "Strict" else "patch" if patch else "body"
        unknown: list[str] = []
        if res.custom and expected_rv is None:
            name = str(obj["metadata"].get("name"))
            raise errors.invalid(
                res,
                name,
                [errors.cause("FieldValueInvalid", "metadata.resourceVersion", _RV_REQUIRED)],
                kind=res.plural,
            )

        def prepare(new: store.Obj, old: store.Obj) -> None:
            if route.subresource == "status":
                # Status and metadata (labels...) come from the request, the rest from
                # the stored object: the real server ignores spec changes here.
                status, meta = new.get("status"), new["metadata"]
                new.clear()
                new.update(json.loads(store.dumps(old)))
                new["status"], new["metadata"] = status, meta
            elif res.status_subresource:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            self._default(res, new)
            unknown.extend(validation.admit(res, new, schema=schema, strict=strict, old=old))
            if res is resources.EVENTS_V1:
                core = conversion.event_to_core(new)
                new.clear()
                new.update(core)

        entry = self.store.update(
            res, obj, expected_rv=expected_rv, dry_run=dry_run, prepare=prepare
        )
        return Response(200, _out(res, entry), _warnings(mode, unknown))

    def _patch(self, req: Request, route: Route, schema: dict[str, Any] | None) -> Response:
        assert route.name is not None
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == APPLY:
            return self._apply(req, route, schema)
        if ctype not in (MERGE, JSON_PATCH, STRATEGIC) or (ctype == STRATEGIC and route.res.custom):
            accepted = [JSON_PATCH, MERGE] if route.res.custom else [JSON_PATCH, MERGE, STRATEGIC]
            raise errors.ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(accepted),
                # The real server adds empty details for an unknown type, none for a
                # strategic merge patch of a custom resource.
                details=None if ctype == STRATEGIC else {},
            )
        patch = _json_body(req)
        dry_run = _dry_run(req)
        mode = _field_validation(req)
        with self.store.lock:
            doc: Any = _copy(route.res, self.store.require(route.res, route.namespace, route.name))
            try:
                if ctype == JSON_PATCH:
                    doc = patching.json_patch(doc, patch)
                elif isinstance(patch, dict):
                    doc = patching.merge_patch(doc, patch)
                else:
                    raise patching.BadPatch("a merge patch must be a JSON object")
            except patching.BadPatch as e:
                raise errors.bad_request(str(e)) from e
            except patching.PatchError as e:
                raise errors.ApiError(422, str(e), details={}) from e
            if not isinstance(doc, dict):
                raise errors.ApiError(422, "the patched document is not a JSON object", details={})
            try:
                validation.check_string_maps(doc)
            except errors.ApiError as e:
                # The patched object does not decode: the real server blames the patch.
                cause = errors.cause("FieldValueInvalid", "patch", e.message)
                raise errors.ApiError(
                    422, f"patch: Invalid value: {e.message}", details={"causes": [cause]}
                ) from e
            fake = Request("PUT", req.path, req.query, req.headers, store.dumps(doc))
            obj = self._object_body(fake, route)
            rv = obj["metadata"].get("resourceVersion") or None
            if route.res.custom and rv is None:
                # A patch is never unconditional-update-rejected: re-read the current version.
                rv = self.store.require(route.res, route.namespace, route.name).obj["metadata"][
                    "resourceVersion"
                ]
            return self._replace(
                route, obj, expected_rv=rv, schema=schema, dry_run=dry_run, mode=mode, patch=True
            )

    def _apply(self, req: Request, route: Route, schema: dict[str, Any] | None) -> Response:
        """Server-side apply, simplified: create when missing, else merge (see module doc)."""
        if not req.query.get("fieldManager"):
            raise errors.invalid_options(
                "PatchOptions",
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            )
        try:
            applied = yaml.safe_load(req.body or b"")
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from e
        if not isinstance(applied, dict):
            raise errors.bad_request("an apply patch must be an object")
        with self.store.lock:
            current = self.store.get(route.res, route.namespace, route.name or "")
            if current is None:
                fake = Request("POST", req.path, req.query, req.headers, store.dumps(applied))
                return self._create(fake, route, schema)
            merged = patching.merge_patch(_copy(route.res, current), applied)
            fake = Request("PUT", req.path, req.query, req.headers, store.dumps(merged))
            obj = self._object_body(fake, route)
            meta = applied.get("metadata")
            rv = (meta.get("resourceVersion") if isinstance(meta, dict) else None) or current.obj[
                "metadata"
            ]["resourceVersion"]
            return self._replace(
                route,
                obj,
                expected_rv=rv,
                schema=schema,
                dry_run=_dry_run(req),
                mode=_field_validation(req),
                patch=True,
            )

    def _delete(self, req: Request, route: Route) -> Response:
        assert route.name is not None
        opts = _json_body(req) if req.body else {}
        if not isinstance(opts, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        dry_run = _dry_run(req) or opts.get("dryRun") == ["All"]
        entry = self.store.delete(
            route.res,
            route.namespace,
            route.name,
            preconditions=opts.get("preconditions"),
            dry_run=dry_run,
        )
        if route.res is resources.PODS:
            # Pods answer with the deleted object (the client's return type is V1Pod).
            return Response(200, entry.body())
        uid = entry.obj["metadata"].get("uid")
        return Response(200, store.dumps(_success(route.res, route.name, uid)))

    # --- defaults ------------------------------------------------------------------------

    @staticmethod
    def _default(res: resources.Resource, obj: store.Obj) -> None:
        """Server-side defaults the operator may rely on."""
        if res is resources.PODS:
            status = obj.setdefault("status", {})
            if isinstance(status, dict):
                status.setdefault("phase", "Pending")
        elif res is resources.CRDS:
            default_crd(obj)
        elif res is resources.EVENTS:
            obj.setdefault("involvedObject", {})


def default_crd(obj: store.Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("names"), dict):
        raise errors.invalid(
            resources.CRDS,
            str(obj["metadata"].get("name")),
            [errors.cause("FieldValueRequired", "spec.names", "Required value")],
        )
    names, group = spec["names"], spec.get("group", "")
    wanted = f"{names.get('plural', '')}.{group}"
    if obj["metadata"].get("name") != wanted:
        raise errors.invalid(
            resources.CRDS,
            str(obj["metadata"].get("name")),
            [
                errors.cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{obj["metadata"].get("name")}": '
                    'must be spec.names.plural+"."+spec.group',
                )
            ],
        )
    accepted = dict(names)
    accepted.setdefault("singular", str(names.get("plural", "")))
    accepted.setdefault("listKind", f"{names.get('kind', '')}List")
    obj["status"] = {
        "acceptedNames": accepted,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": [v.get("name") for v in spec.get("versions", []) if v.get("storage")],
    }
