"""A delaying TCP proxy on loopback: adds RTT/2 to each direction, keeps order and pipelining.

netem is not available in these machines' kernels (research/dovecot-testbed.md), so latency
is emulated in user space.  Each chunk read from one side is forwarded to the other side
RTT/2 after it arrived; reading never waits for writing, so many requests can be in flight
(pipelining is not serialised, as a real network would not).  Due chunks are coalesced into
one send.  asyncio timers overshoot by 1-2 ms, so the proxy sleeps until 2 ms before the due
time and then yields in a loop.  Its sockets have TCP_NODELAY, and TCP_QUICKACK is set again
after every read (the kernel clears it), so the proxy adds no Nagle/delayed-ACK stall of its
own.  Memory is bounded: a direction stops reading while more than ``--buffer-mb`` are queued.

    python -m bench.latency_proxy --target 127.0.0.1:PORT --rtt-ms 25 [--listen-port 0]

prints ``listening 127.0.0.1:<port>`` once ready, and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import socket
import sys
import time

HOST = "127.0.0.1"
CHUNK = 256 * 1024
SPIN_S = 0.002


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _quickack(sock)


def _quickack(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except (AttributeError, OSError):
        pass


async def _sleep_until(due: float) -> None:
    remaining = due - time.monotonic()
    if remaining > SPIN_S:
        await asyncio.sleep(remaining - SPIN_S)
    for _ in range(1_000_000):
        if time.monotonic() >= due:
            return
        await asyncio.sleep(0)


async def _pipe(src: socket.socket, dst: socket.socket, delay: float, buffer_bytes: int) -> None:
    """Forward src -> dst, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    queued = 0
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def reader() -> None:
        nonlocal queued
        while True:
            await room.wait()
            try:
                data = await loop.sock_recv(src, CHUNK)
            except (ConnectionError, OSError):
                data = b""
            _quickack(src)
            queue.append((time.monotonic() + delay, data))
            queued += len(data)
            if queued > buffer_bytes:
                room.clear()
            ready.set()
            if not data:
                return

    async def writer() -> None:
        nonlocal queued
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            await _sleep_until(due)
            out = [data]
            now = time.monotonic()
            while data and queue and queue[0][0] <= now and queue[0][1]:
                out.append(queue.popleft()[1])
            payload = b"".join(out)
            if payload:
                try:
                    await loop.sock_sendall(dst, payload)
                except (ConnectionError, OSError):
                    return
                queued -= len(payload)
                if queued <= buffer_bytes:
                    room.set()
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return

    await asyncio.gather(reader(), writer())


async def _serve_one(client: socket.socket, target: tuple[str, int], delay: float, buffer_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        _tune(client)
        upstream.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(upstream, target), timeout=10)
        _tune(upstream)
        await asyncio.gather(_pipe(client, upstream, delay, buffer_bytes), _pipe(upstream, client, delay, buffer_bytes))
    except (OSError, TimeoutError):
        pass
    finally:
        client.close()
        upstream.close()


async def serve(target: tuple[str, int], rtt_ms: float, listen_port: int, buffer_mb: int) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, listen_port))
    listener.listen(128)
    listener.setblocking(False)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {HOST}:{listener.getsockname()[1]}", flush=True)
    tasks: set[asyncio.Task] = set()

    async def accept_loop() -> None:
        while True:
            client, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(_serve_one(client, target, rtt_ms / 2000, buffer_mb * 1024 * 1024))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    acceptor = asyncio.create_task(accept_loop())
    await stop.wait()
    acceptor.cancel()
    for task in list(tasks):
        task.cancel()
    listener.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to (loopback only)")
    parser.add_argument("--rtt-ms", type=float, default=25.0, help="round-trip time to add (half per direction)")
    parser.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--buffer-mb", type=int, default=32, help="bytes queued per direction before reading pauses")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the target must be on loopback")
    asyncio.run(serve((host, int(port)), args.rtt_ms, args.listen_port, args.buffer_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
