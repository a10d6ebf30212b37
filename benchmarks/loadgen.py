"""A small closed-loop HTTP load generator: N threads, each with its own keep-alive connection to 127.0.0.1, sending
the next request as soon as the last one is answered. Bounded in requests and in seconds; loopback only."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadResult:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


class Client:
    """One keep-alive connection POSTing to /invocations."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"the load generator talks to loopback only, not {parts.hostname}")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def invoke(self, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> int:
        # One send for headers and body (http.client joins them when the body is bytes): no Nagle stall here.
        try:
            self.connection.request("POST", "/invocations", body, {"Content-Type": content_type,
                                                                   "Accept": "application/json", **(headers or {})})
            response = self.connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnects on the next request
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            return 0

    def close(self) -> None:
        self.connection.close()


def timed_invoke(client: Client, body: bytes, content_type: str,
                 headers: Mapping[str, str] | None = None) -> tuple[float, bool]:
    started = time.perf_counter()
    status = client.invoke(body, content_type, headers)
    return time.perf_counter() - started, status == 200


def closed_loop(url: str, bodies: Sequence[bytes], content_type: str, concurrency: int, max_requests: int,
                max_seconds: float, headers: Sequence[Mapping[str, str]] = ({},)) -> LoadResult:
    """`concurrency` clients, together at most `max_requests` requests and `max_seconds` seconds; a client's i-th
    request carries `headers[i % len(headers)]` (a multi-model endpoint's TargetModel, spread over its models)."""
    result, lock = LoadResult(concurrency), threading.Lock()
    budget, deadline = [max_requests], [float("inf")]  # the clock starts once every client is connected

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.monotonic() > deadline[0]:
                return False
            budget[0] -= 1
            return True

    def worker(offset: int) -> None:
        client, i = Client(url), offset
        timed_invoke(client, bodies[i % len(bodies)], content_type, headers[i % len(headers)])  # warm, not counted
        barrier.wait()
        while take():
            seconds, ok = timed_invoke(client, bodies[i % len(bodies)], content_type, headers[i % len(headers)])
            with lock:
                if ok:
                    result.latencies_s.append(seconds)
                else:
                    result.errors += 1
            i += 1
        client.close()

    barrier = threading.Barrier(concurrency + 1)
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, deadline[0] = time.perf_counter(), time.monotonic() + max_seconds
    for thread in threads:
        thread.join(max_seconds + 60)
    result.wall_s = time.perf_counter() - started
    return result
