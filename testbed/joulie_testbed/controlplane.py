"""A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback.

The binaries are found the way controller-runtime's envtest finds them: a directory
named by ``KUBEBUILDER_ASSETS`` holding ``etcd`` and ``kube-apiserver``. A start makes
a throw-away directory with a fresh CA, a serving certificate for 127.0.0.1, a
service-account signing key, a static admin token (group ``system:masters``), an
audit policy (every request is logged at ``Metadata`` level: the server's own
request log) and a kubeconfig; authorization is the real RBAC authorizer.

No kube-controller-manager is started on purpose: the server then receives no
request but ours, so its ``apiserver_request_total`` counts and its audit log show
exactly what the operator and the test did. Namespace deletion and garbage
collection are therefore not available; tests isolate by deleting what they made.

Every process is started with ``PR_SET_PDEATHSIG=SIGKILL`` in its own session: if
the test process dies, even by SIGKILL, the kernel kills etcd and kube-apiserver.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s

ASSETS_ENV = "KUBEBUILDER_ASSETS"
HOW_TO_GET_ASSETS = (
    "real kube-apiserver tests need KUBEBUILDER_ASSETS, a directory with etcd and "
    "kube-apiserver: export KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.36)"
)
_PR_SET_PDEATHSIG = 1
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def find_assets() -> Path | None:
    """The ``KUBEBUILDER_ASSETS`` directory if it holds both binaries, else None."""
    raw = os.environ.get(ASSETS_ENV, "")
    if not raw:
        return None
    path = Path(raw)
    if all(os.access(path / b, os.X_OK) for b in ("etcd", "kube-apiserver")):
        return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL me when my parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _make_pki(pki: Path) -> None:
    """CA, serving certificate for 127.0.0.1/localhost, service-account key pair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joulie-envtest-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes.default.svc"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(_pem_key(key))
    (pki / "sa.key").write_bytes(_pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class ControlPlane:
    """etcd + kube-apiserver in a temporary directory; ``start()``/``stop()``."""

    def __init__(self, assets: Path, *, workdir: Path | None = None) -> None:
        self.assets = assets
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="joulie-envtest-"))
        self._own_dir = workdir is None
        self.pki = self.dir / "pki"
        self.audit_log = self.dir / "audit.log"
        self.admin_token = secrets.token_hex(24)
        self.api_port = free_port()
        self.etcd_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- addresses and credentials -------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (group ``system:masters``)."""
        return self.dir / "kubeconfig"

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, server: str | None = None
    ) -> Path:
        """A kubeconfig for ``token`` (default: the admin's) at ``path``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority": str(self.ca_file),
                    },
                }
            ],
            "users": [{"name": "user", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "user"}}],
            "current-context": "envtest",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def api_client(self, token: str | None = None) -> k8s.ApiClient:
        """An official-client ApiClient authenticated with ``token`` (default: admin)."""
        conf = k8s.Configuration()
        conf.host = self.server
        conf.ssl_ca_cert = str(self.ca_file)
        conf.api_key = {"authorization": token or self.admin_token}
        conf.api_key_prefix = {"authorization": "Bearer"}
        return k8s.ApiClient(conf)

    # -- the server's own view ---------------------------------------------------

    def get_raw(self, path: str, *, timeout: float = 10) -> bytes:
        """GET ``path`` as the admin; the body, or RuntimeError on a non-200 answer."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        conn = http.client.HTTPSConnection("127.0.0.1", self.api_port, context=ctx, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.admin_token}"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        return body

    def request_totals(self) -> dict[tuple[str, str, str], float]:
        """``apiserver_request_total`` by (verb, resource, code), from ``/metrics``."""
        totals: dict[tuple[str, str, str], float] = {}
        for line in self.get_raw("/metrics").decode().splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_part, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
            labels = dict(item.split("=", 1) for item in _split_labels(labels_part) if "=" in item)
            verb, resource, code = (
                labels.get(k, "").strip('"') for k in ("verb", "resource", "code")
            )
            key = (verb, resource, code)
            totals[key] = totals.get(key, 0.0) + float(value)
        return totals

    def audit_mark(self) -> int:
        """A position in the audit log; pass it to ``audit_events(since=…)``."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_events(self, *, since: int = 0) -> list[dict[str, Any]]:
        """Every request the server completed after ``since`` (its audit log)."""
        if not self.audit_log.exists():
            return []
        with self.audit_log.open("rb") as f:
            f.seek(since)
            data = f.read()
        events = []
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    # -- life cycle ---------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, *, timeout: float = 90) -> ControlPlane:
        self.pki.mkdir(parents=True, exist_ok=True)
        _make_pki(self.pki)
        (self.pki / "tokens.csv").write_text(f"{self.admin_token},admin,admin-uid,system:masters\n")
        (self.dir / "audit-policy.yaml").write_text(yaml.safe_dump(_AUDIT_POLICY))
        peer = free_port()
        self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                "--name", "envtest",
                "--data-dir", str(self.dir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"envtest=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.api_port),
                "--tls-cert-file", str(self.pki / "apiserver.crt"),
                "--tls-private-key-file", str(self.pki / "apiserver.key"),
                "--cert-dir", str(self.dir / "certs"),
                "--client-ca-file", str(self.ca_file),
                "--token-auth-file", str(self.pki / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(self.pki / "sa.pub"),
                "--service-account-signing-key-file", str(self.pki / "sa.key"),
                "--service-cluster-ip-range", "10.0.0.0/24",
                "--disable-admission-plugins", "ServiceAccount",
                "--endpoint-reconciler-type", "none",
                "--audit-policy-file", str(self.dir / "audit-policy.yaml"),
                "--audit-log-path", str(self.audit_log),
                "--audit-log-format", "json",
                "--audit-log-mode", "blocking",
                "--profiling=false",
            ],
        )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.write_kubeconfig(self.kubeconfig)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        paths = ["/readyz", "/api/v1/namespaces/default"]
        while paths:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{self.log_tail(name)}")
            try:
                self.get_raw(paths[0], timeout=2)
                paths.pop(0)
                continue
            except Exception as e:  # not up yet: connection refused, 500, 404
                last = e
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"kube-apiserver not ready after {timeout}s ({last}):\n"
                    + self.log_tail("kube-apiserver")
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}


def _split_labels(text: str) -> Iterator[str]:
    """Split ``a="x",b="y,z"`` at commas outside quotes."""
    start, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == "," and not quoted:
            yield text[start:i]
            start = i + 1
    if start < len(text):
        yield text[start:]
