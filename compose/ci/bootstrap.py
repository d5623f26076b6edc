"""Bootstrap of the test stack's control plane (the compose ``bootstrap`` service).

The stand-in for ``compose/bootstrap.sh`` (which needs k3s's kubectl): rewrite the
control plane's kubeconfig for the compose network, install the CRDs, create
``FAKE_NODES`` managed nodes and ``BOOT_PODS`` unconstrained pods bound to them. Idempotent:
a second run creates only what is missing. ``--ready`` is the control plane's
healthcheck. Runs in the control-plane image (official client + PyYAML), never in the
operator's.
"""

from __future__ import annotations

import glob
import os
import pathlib
import ssl
import sys
import time
import urllib.request

import yaml
from kubernetes import client, config  # noqa: TID251 - not the operator
from kubernetes.client.exceptions import ApiException  # noqa: TID251

MANAGED = {"joulie.io/managed": "true"}


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # any failure means "not yet"
            last = exc
        else:
            last = None
        if time.monotonic() > deadline:
            sys.exit(f"bootstrap: {what} not reached in {timeout:.0f} s ({last!r})")
        time.sleep(0.5)


def write_kubeconfig() -> None:
    src = pathlib.Path(env("K3S_KUBECONFIG_OUTPUT", "/kube/kubeconfig.yaml"))
    dst = pathlib.Path(env("OPERATOR_KUBECONFIG", "/kube/kubeconfig-compose.yaml"))
    api = env("K3S_API_URL", "https://k3s:6443")
    until(f"{src} written", lambda: src.is_file() and src.stat().st_size > 0, 120)
    text = src.read_text().replace("https://127.0.0.1:6443", api)
    tmp = dst.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(dst)
    config.load_kube_config(str(dst))
    print(f"bootstrap: wrote {dst} (server {api})", flush=True)


def install_crds() -> None:
    ext = client.ApiextensionsV1Api()
    names = []
    for path in sorted(glob.glob(env("CRD_GLOB", "/manifests/crd/*.yaml"))):
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if not doc:
                continue
            names.append(doc["metadata"]["name"])
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def established() -> bool:
        for name in names:
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status and crd.status.conditions) or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    until("CRDs established", established, 60)
    print(f"bootstrap: CRDs {', '.join(names)} established", flush=True)


def create_nodes(count: int) -> list[str]:
    core = client.CoreV1Api()
    names = [f"fake-node-{i:03d}" for i in range(count)]
    existing = {n.metadata.name for n in core.list_node().items}
    for name in names:
        if name in existing:
            continue
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **MANAGED}},
                "spec": {
                    "taints": [{"key": "joulie.io/fake", "value": "true", "effect": "NoSchedule"}]
                },
            }
        )
    return names


def create_pods(count: int, nodes: list[str]) -> None:
    core = client.CoreV1Api()
    existing = {p.metadata.name for p in core.list_namespaced_pod("default").items}
    for i in range(count):
        name = f"boot-pod-{i:03d}"
        if name in existing or not nodes:
            continue
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "boot"}},
                "spec": {
                    "nodeName": nodes[i % len(nodes)],
                    "containers": [{"name": "c", "image": "registry.invalid/none:0"}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        )


def ready() -> int:
    """The control plane's healthcheck (``bootstrap.py --ready``): 0 once /readyz says ok."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen("https://127.0.0.1:6443/readyz", context=context, timeout=3):
            return 0
    except OSError:
        return 1


def main() -> None:
    if sys.argv[1:] == ["--ready"]:
        sys.exit(ready())
    write_kubeconfig()
    until("API server serving", lambda: client.VersionApi().get_code().git_version, 120)
    install_crds()
    until("namespace default", lambda: client.CoreV1Api().read_namespace("default"), 60)
    nodes = create_nodes(int(env("FAKE_NODES", "3")))
    create_pods(int(env("BOOT_PODS", "0")), nodes)
    print(f"bootstrap: done ({len(nodes)} managed nodes)", flush=True)


if __name__ == "__main__":
    main()
