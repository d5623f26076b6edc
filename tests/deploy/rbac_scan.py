"""Derive, from the source, the Kubernetes API permissions the operator really uses.

Two steps, both with ``ast`` (nothing is executed but the import of kube.py's
``Resource`` constants):

1. **Capabilities** — in ``kube.py``, every ``ApiGateway`` method that calls
   ``self._request("<verb>", <RESOURCE>, "<HTTP method>", ...)``. The resource is
   either a module constant (``NODES``: fixed) or one of the method's parameters
   (``list_items(resource)``, ``get(resource, name)``: generic, decided by the caller).
2. **Uses** — in every other ``joulie_tasks/**/*.py`` module, every call of one of those
   methods. A generic method's resource argument is resolved: ``cluster.NODES`` directly,
   or a parameter of the enclosing function (annotated ``Resource``), followed back
   through that function's call sites (``_list(gateway, cluster.NODES, ...)``).

A gateway method name that is also a ``dict`` method (``get``) is a gateway call only
when its resource argument resolves to a Resource; a distinctive name
(``list_items``) whose argument cannot be resolved is an error, so a refactor the scan
does not understand fails loudly instead of silently shrinking the set.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from joulie_tasks.adapters import kube
from joulie_tasks.ports import cluster

#: RBAC verb implied by each HTTP method (GET is get or list: see ``http_verb``).
HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

Permission = tuple[str, str, str]  # (apiGroup, resource plural, verb)


class ScanError(AssertionError):
    """The source has a shape this scan does not understand."""


@dataclass(frozen=True)
class Request:
    """One ``self._request(...)`` call inside a gateway method."""

    method: str  # gateway method name
    verb: str
    http_method: str
    resource: str | None  # module constant name, when fixed
    param: str | None  # parameter name, when the caller chooses the resource
    param_index: int | None  # position of that parameter, ``self`` excluded
    path_has_name: bool | None  # ``X.path(name)`` → True, ``X.path()`` → False
    line: int


@dataclass
class Scan:
    capabilities: dict[str, list[Request]]
    uses: set[tuple[str, str]] = field(default_factory=set)  # (constant, verb)
    sites: list[str] = field(default_factory=list)


def _const_str(node: ast.AST, what: str, line: int) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ScanError(f"kube.py:{line}: {what} of _request is not a string literal")


#: The gateway's request helpers: ``_request`` (one JSON answer), ``_stream`` (a watch).
_PLUMBING = ("_request", "_stream")


def gateway_requests(
    source: str, constants: Iterable[str], cls: str = "ApiGateway"
) -> dict[str, list[Request]]:
    """{method name: [Request, ...]} for every ``self._request`` call in class ``cls``."""
    constants = set(constants)
    tree = ast.parse(source)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    if len(classes) != 1:
        raise ScanError(f"kube.py: expected one class {cls}")
    found: dict[str, list[Request]] = {}
    for fn in classes[0].body:
        if not isinstance(fn, ast.FunctionDef) or fn.name in _PLUMBING:
            continue
        params = [a.arg for a in fn.args.args[1:]] + [a.arg for a in fn.args.kwonlyargs]
        for call in ast.walk(fn):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in _PLUMBING
            ):
                continue
            if len(call.args) < 4:
                raise ScanError(f"kube.py:{call.lineno}: _request needs 4 positional arguments")
            verb = _const_str(call.args[0], "the verb", call.lineno)
            http_method = _const_str(call.args[2], "the HTTP method", call.lineno)
            res = call.args[1]
            if not isinstance(res, ast.Name):
                raise ScanError(f"kube.py:{call.lineno}: resource of _request is not a name")
            fixed = res.id if res.id in constants else None
            param = res.id if res.id in params else None
            if fixed is None and param is None:
                raise ScanError(f"kube.py:{call.lineno}: unknown resource {res.id!r}")
            found.setdefault(fn.name, []).append(
                Request(
                    method=fn.name,
                    verb=verb,
                    http_method=http_method,
                    resource=fixed,
                    param=param,
                    param_index=params.index(param) if param else None,
                    path_has_name=_path_has_name(call.args[3]),
                    line=call.lineno,
                )
            )
    return found


def _path_has_name(node: ast.AST) -> bool | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "path"
    ):
        return bool(node.args)
    return None


def http_verb(request: Request) -> str | None:
    """The RBAC verb an HTTP request implies (None when the path is not ``X.path(...)``)."""
    if request.http_method == "GET":
        if request.verb == "watch" and request.path_has_name is False:
            return "watch"  # a streamed list: ?watch=true
        if request.path_has_name is None:
            return None
        return "get" if request.path_has_name else "list"
    return HTTP_VERBS.get(request.http_method)


# --- uses -----------------------------------------------------------------------------------


@dataclass
class _Module:
    name: str
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]
    kube_aliases: set[str]  # names the kube (or ports.cluster) module is imported as
    direct: dict[str, str]  # local name → constant, from ``from ...kube import NODES``


def _load(name: str, source: str, constants: set[str]) -> _Module:
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    aliases: set[str] = set()
    direct: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "joulie_tasks.adapters":
            aliases |= {a.asname or a.name for a in node.names if a.name == "kube"}
        elif isinstance(node, ast.ImportFrom) and node.module == "joulie_tasks.ports":
            aliases |= {a.asname or a.name for a in node.names if a.name == "cluster"}
        elif isinstance(node, ast.ImportFrom) and node.module in (
            "joulie_tasks.adapters.kube",
            "joulie_tasks.ports.cluster",
        ):
            direct |= {a.asname or a.name: a.name for a in node.names if a.name in constants}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if (
                    a.name in ("joulie_tasks.adapters.kube", "joulie_tasks.ports.cluster")
                    and a.asname
                ):
                    aliases.add(a.asname)
    return _Module(name, tree, parents, aliases, direct)


def _functions(module: _Module, name: str) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            yield node


def _enclosing_with_param(module: _Module, node: ast.AST, param: str) -> ast.AST | None:
    cur = module.parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = cur.args
            if param in [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]:
                return cur
        cur = module.parents.get(cur)
    return None


def _annotated_resource(fn: ast.AST, param: str) -> bool:
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    for a in args:
        if a.arg == param and a.annotation is not None:
            return "Resource" in ast.unparse(a.annotation)
    return False


def _argument(call: ast.Call, index: int | None, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if index is not None and index < len(call.args):
        arg = call.args[index]
        return None if isinstance(arg, ast.Starred) else arg
    return None


def _resolve(
    expr: ast.AST, module: _Module, modules: list[_Module], constants: set[str], depth: int = 0
) -> set[str] | None:
    """The Resource constants ``expr`` can be, or None when it is not a Resource."""
    if depth > 6:
        raise ScanError(f"{module.name}: resource argument passed through too many calls")
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id in module.kube_aliases
    ):
        if expr.attr in constants:
            return {expr.attr}
        return None
    if isinstance(expr, ast.Name):
        if expr.id in module.direct:
            return {module.direct[expr.id]}
        fn = _enclosing_with_param(module, expr, expr.id)
        if fn is None or not _annotated_resource(fn, expr.id):
            return None
        assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        all_args = fn.args.posonlyargs + fn.args.args
        names = [a.arg for a in all_args]
        index = names.index(expr.id) if expr.id in names else None
        if index is not None and names and names[0] in ("self", "cls"):
            index -= 1
        return _resolve_through_callers(fn, index, expr.id, modules, constants, depth)
    return None


def _resolve_through_callers(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    index: int | None,
    param: str,
    modules: list[_Module],
    constants: set[str],
    depth: int,
) -> set[str]:
    """The Resources passed as ``param`` at every call site of ``fn`` (in any module)."""
    found: set[str] = set()
    for mod in modules:
        for call in ast.walk(mod.tree):
            if not isinstance(call, ast.Call):
                continue
            f = call.func
            called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if called != fn.name:
                continue
            arg = _argument(call, index, param)
            if arg is None:
                continue
            got = _resolve(arg, mod, modules, constants, depth + 1)
            if got is None:
                raise ScanError(
                    f"{mod.name}:{call.lineno}: cannot tell which Resource is passed to "
                    f"{fn.name}({param}=...)"
                )
            found |= got
    return found  # empty when nobody calls the helper: it then uses nothing


def scan(kube_source: str, other_sources: dict[str, str], constants: Iterable[str]) -> Scan:
    """Capabilities of the gateway and the (constant, verb) pairs the other modules use."""
    constants = set(constants)
    caps = gateway_requests(kube_source, constants)
    result = Scan(capabilities=caps)
    modules = [_load(name, src, constants) for name, src in sorted(other_sources.items())]
    ambiguous = {m for m in caps if hasattr(dict, m) or hasattr(list, m)}
    for module in modules:
        for call in ast.walk(module.tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            method = call.func.attr
            if method not in caps:
                continue
            for req in caps[method]:
                arg = _argument(call, req.param_index, req.param or "")
                if req.resource is not None:
                    targets: set[str] | None = {req.resource}
                elif arg is not None:
                    targets = _resolve(arg, module, modules, constants)
                else:
                    targets = None
                if targets is None:
                    if method in ambiguous:
                        continue  # e.g. dict.get: not a gateway call
                    raise ScanError(
                        f"{module.name}:{call.lineno}: cannot tell which Resource "
                        f"{method}() is called with"
                    )
                for target in sorted(targets):
                    result.uses.add((target, req.verb))
                    result.sites.append(f"{module.name}:{call.lineno} {method} {target}")
    return result


def sources(package: Path) -> tuple[str, dict[str, str]]:
    """adapters/kube.py's source and every other module's source (by path in the package)."""
    kube_path = package / "adapters" / "kube.py"
    kube = kube_path.read_text()
    others = {
        str(p.relative_to(package)): p.read_text()
        for p in sorted(package.rglob("*.py"))
        if p != kube_path
    }
    return kube, others


# --- the operator's own permissions ------------------------------------------------

PACKAGE = Path(kube.__file__).resolve().parents[1]


def operator_constants() -> dict[str, cluster.Resource]:
    """The Resource constants (ports/cluster.py) by name."""
    return {name: obj for name, obj in vars(cluster).items() if isinstance(obj, cluster.Resource)}


def _group(resource: cluster.Resource) -> str:
    """API group of a REST prefix: ``/api/v1`` → core (""), ``/apis/g/v`` → ``g``."""
    parts = resource.prefix.strip("/").split("/")
    if parts[0] == "api":
        return ""
    assert parts[0] == "apis", f"unexpected prefix {resource.prefix}"
    assert len(parts) == 3, f"unexpected prefix {resource.prefix}"
    return parts[1]


def permission(constant: str, verb: str) -> Permission:
    resource = operator_constants()[constant]
    return (_group(resource), resource.plural, verb)


def operator_scan() -> Scan:
    kube_source, others = sources(PACKAGE)
    return scan(kube_source, others, operator_constants())


def used_permissions() -> set[Permission]:
    """Every (apiGroup, resource, verb) the operator's code calls."""
    return {permission(c, v) for c, v in operator_scan().uses}
