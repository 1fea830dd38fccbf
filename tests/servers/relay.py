"""A slow TCP relay on 127.0.0.1: what a WAN link, a TLS terminator or an SSH tunnel does to a client's
bytes. It reads what the client sends at once (so the client believes it was sent) and passes it on
at a paced rate; bytes a client wrote before it died are still delivered, later.
"""

from __future__ import annotations

import collections
import socket
import threading
import time


class SlowRelay:
    """Forward 127.0.0.1:``port`` to ``target``; client→server ``chunk`` bytes per ``delay`` seconds."""

    def __init__(self, target: tuple[str, int], *, chunk: int = 8192, delay: float = 0.003) -> None:
        self.target = target
        self.chunk = chunk
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open = 0  # connections not yet fully delivered and closed
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
            with self._lock:
                self._open += 1
            self._start(self._client_to_server, client, upstream)
            self._start(self._server_to_client, upstream, client)

    def _client_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        pending: collections.deque[bytes] = collections.deque()
        done = threading.Event()
        cond = threading.Condition()

        def read() -> None:  # as fast as the client writes: the link's buffers
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    with cond:
                        pending.append(data)
                        cond.notify()
            except OSError:
                pass
            finally:
                with cond:
                    done.set()
                    cond.notify()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with cond:
                    while not pending and not done.is_set():
                        cond.wait(0.5)
                    if not pending:
                        break
                    data = pending.popleft()
                for start in range(0, len(data), self.chunk):
                    time.sleep(self.delay)
                    upstream.sendall(data[start : start + self.chunk])
            upstream.shutdown(socket.SHUT_WR)  # the server sees the client's end only after its last byte
        except OSError:
            pass
        finally:
            reader.join(5)
            client.close()
            with self._lock:
                self._open -= 1

    def _server_to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def wait_idle(self, timeout: float = 60) -> bool:
        """True once every connection's bytes were delivered and it was closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._open == 0:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(1)
