"""``python -m joulie_testbed.emulator``: run the emulator as its own process.

Writes the kubeconfig first, then prints exactly one ready line
(``emulator listening on http://HOST:PORT``) so a parent can wait for it; exits 0 on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from joulie_testbed.emulator import app


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m joulie_testbed.emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--kubeconfig", help="write a kubeconfig for this emulator here")
    p.add_argument("--token", help="require this bearer token (written to the kubeconfig)")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument(
        "--no-crd", action="store_true", help="do not pre-install the NodePowerProfile CRD"
    )
    p.add_argument("--nodes", type=int, default=0, help="seed this many nodes")
    p.add_argument("--pods", type=int, default=None, help="seed this many pods in total")
    p.add_argument("--pods-per-node", type=float, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reserved", type=int, default=0)
    p.add_argument("--unschedulable", type=int, default=0)
    p.add_argument("--unmanaged", type=int, default=0)
    p.add_argument("--pending-fraction", type=float, default=0.1)
    p.add_argument("--terminal-fraction", type=float, default=0.05)
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    emulator = app.Emulator(args.latency_ms, token=args.token, install_crd=not args.no_crd)
    if args.nodes:
        per_node = args.pods / args.nodes if args.pods is not None else args.pods_per_node
        emulator.seed(
            args.nodes,
            per_node,
            seed=args.seed,
            reserved=args.reserved,
            unschedulable=args.unschedulable,
            unmanaged=args.unmanaged,
            pending_fraction=args.pending_fraction,
            terminal_fraction=args.terminal_fraction,
        )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start(args.host, args.port)
    try:
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        print(f"emulator listening on {emulator.url}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
