"""A local HTTP server (127.0.0.1 only) serving the golden checkpoints under NGC's file names.

Used by the download tests of the CLI, the library and the GUI. It logs every request (file,
Range header, status) so tests can tell a resumed transfer from a restarted one; its behaviours
(drop the connection, ignore Range, announce more bytes than it sends, stall) are switched per test.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

T_NAME = "nvidia_tacotron2pyt_fp32_20190427"
W_NAME = "nvidia_waveglowpyt_fp32_20190427"


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, closed after the response, as a dropped transfer needs.
    def log_message(self, *args):
        pass

    def do_GET(self):
        s = self.server
        name = self.path.rsplit("/", 1)[-1]
        rng = self.headers.get("Range")
        if s.stall is not None:
            s.stall.wait(10)      # released at teardown at the latest
            return
        data = s.files.get(name)
        if data is None:
            s.log.append((name, rng, 404))
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not s.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                s.log.append((name, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            s.log.append((name, rng, 206))
        else:
            self.send_response(200)
            s.log.append((name, rng, 200))
        body = data[start:]
        self.send_header("Content-Length", str(len(body) + s.extra_length))
        self.end_headers()
        drop = s.drop_after.pop(name, None)     # only the first request for that file drops
        self.wfile.write(body if drop is None else body[:drop])


def serve_checkpoints(golden_dir: Path):
    """A generator: starts the server, yields it, and stops it when resumed (a fixture body)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {T_NAME: (golden_dir / "tacotron2_dle.pt").read_bytes(),
                 W_NAME: (golden_dir / "waveglow_dle.pt").read_bytes()}
    srv.log = []
    srv.drop_after = {}       # file name -> bytes sent before the first response is cut off
    srv.ignore_range = False
    srv.extra_length = 0      # Content-Length announces this many bytes more than are sent
    srv.stall = None          # an Event: requests hang until it is set
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/files"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    if srv.stall is not None:
        srv.stall.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)
