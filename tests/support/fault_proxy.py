"""A TCP proxy on 127.0.0.1 that a test switches between passing traffic, refusing new
connections (closed at once: "connection reset") and hanging (connections accepted, no byte
forwarded either way: a black hole that only timeouts end). It runs in its own threads, so a
test's event loop can block on the traffic it stalls."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

PASS, REFUSE, HANG = "pass", "refuse", "hang"


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = PASS
        self.refused = 0  # connections refused or stalled: the fault actually hit someone
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def to(cls, address: str) -> FaultProxy:
        host, _, port = address.removeprefix("http://").rstrip("/").rpartition(":")
        return cls(host or "127.0.0.1", int(port))

    def set(self, mode: str) -> None:
        """Switch mode; leaving PASS also cuts the connections already open (a server that
        went away), so clients must reconnect and meet the fault."""
        self.mode = mode
        if mode != PASS:
            self._cut_all()

    def refuse_for(self, seconds: float) -> None:
        """Refuse now, pass again after `seconds` (an outage of the given length)."""
        self.set(REFUSE)
        timer = threading.Timer(seconds, self.set, args=(PASS,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == REFUSE:
                self.refused += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST: "connection reset by peer"
                continue
            if self.mode == HANG:
                self.refused += 1
                with self._lock:
                    self._conns.append(client)  # held open, never answered
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.mode == HANG and not self._closed:
                    time.sleep(0.05)  # stalls an open connection too
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class HttpFaultProxy:
    """An HTTP forwarder on 127.0.0.1 (for S3): passes requests through, or, for requests
    matching `only` (method, path), answers an error status or holds them unanswered."""

    def __init__(self, upstream: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.upstream = urlsplit(upstream)
        self.mode, self.status = PASS, 503
        self.only: tuple[str, str] | None = None  # (method, path fragment)
        self.hits = 0  # requests the fault answered or held
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                import http.client

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._applies(self.command, self.path):
                    proxy.hits += 1
                    if proxy.mode == HANG:
                        proxy.release.wait(600)
                        self.close_connection = True
                        return
                    payload = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                    self.send_response(proxy.status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _applies(self, method: str, path: str) -> bool:
        if self.mode == PASS:
            return False
        return self.only is None or (method == self.only[0] and self.only[1] in path)

    def fail(self, status: int, only: tuple[str, str] | None = None) -> None:
        self.mode, self.status, self.only = "status", status, only

    def hang(self, only: tuple[str, str] | None = None) -> None:
        self.release.clear()
        self.mode, self.only = HANG, only

    def heal(self) -> None:
        self.mode = PASS
        self.release.set()

    def close(self) -> None:
        self.heal()
        self.server.shutdown()
