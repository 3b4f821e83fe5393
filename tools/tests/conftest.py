"""tools test set-up: one torch thread, the repository root importable (for tools.gpu_check_harness), and a local
file server on 127.0.0.1 for the download tests (no internet)."""
from __future__ import annotations

import http.server
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long run, skipped unless --runslow")
    config.addinivalue_line("markers", "parity: compares with an original implementation (make test-portability)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow; use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@dataclass
class FileServer:
    """What the local server serves (`files`, by URL path), which paths send half their bytes once and then hang up
    (`drop_once`), and every GET it answered as (path, Range header)."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)


def file_handler(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Files(http.server.BaseHTTPRequestHandler):
        """Range support as a real server has; HEAD answers 200 for any path (a reachable host)."""

        def do_HEAD(self):
            state.heads.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            path = self.path.split("?")[0]
            state.requests.append((path, self.headers.get("Range")))
            if path.startswith("/v1.0/shares/"):  # OneDrive's API answers with a redirect to the content
                self.send_response(302)
                self.send_header("Location", f"/content/{path.split('/')[3]}")
                self.end_headers()
                return
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if path in state.drop_once:
                state.drop_once.discard(path)
                self.wfile.write(body[start:start + (len(body) - start) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)  # close mid-body: the client sees an incomplete read
                return
            self.wfile.write(body[start:])

        def log_message(self, *args):
            pass

    return Files


@pytest.fixture
def file_server():
    state = FileServer(url="")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), file_handler(state))
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
