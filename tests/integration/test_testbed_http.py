"""The test bed's HTTP probe (joulie_testbed.procs.read_url) under ``wait_for``: the
error answers a poll drops leave no socket to the garbage collector. The test settings
turn an unclosed-socket ResourceWarning into an error, raised in whichever test the
collector happens to run in (it failed a monitoring test in CI once: Prometheus answers
503 to ``/-/ready`` while it starts)."""

from __future__ import annotations

import gc
import http.server
import threading
import urllib.error
from collections.abc import Iterator

import pytest

from joulie_testbed.procs import read_url, wait_for


class _NotReadyYet(http.server.BaseHTTPRequestHandler):
    """503 to the first five requests, then 200."""

    answered = 0

    def do_GET(self) -> None:
        type(self).answered += 1
        body = b"ready" if self.answered > 5 else b"starting"
        self.send_response(200 if self.answered > 5 else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    _NotReadyYet.answered = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotReadyYet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_polling_through_error_answers_leaves_no_socket_behind(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        read_url(server, timeout=5)
    assert raised.value.code == 503
    assert wait_for(lambda: read_url(server, timeout=5), timeout=30, interval=0.01) == b"ready"
    assert _NotReadyYet.answered == 6
    # (an unclosed socket would be reported here, as an error under the test settings)
    gc.collect()
