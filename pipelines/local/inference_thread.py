"""The one thread a local endpoint runs its model on, with dynamic batching.

Why one thread: torch's OpenMP pool belongs to the thread that calls into it. A server that loads the model on one
thread and predicts on pool threads that come and go runs several OpenMP teams, more threads than cores, and libgomp
then stops spinning between parallel regions: every one of a forward pass's ~60 regions paid a wake-up, and a 5 ms
prediction took 10 (benchmarks/endpoint.py). Loading and predicting on this thread keeps one team, warm.

Why batching: with one thread, requests that arrive while it is busy wait. When the entry point defines
`predict_batch_fn(list_of_input_fn_results, model) -> list_of_predictions` (ours does; SageMaker's container never
calls it), the waiting requests go through one forward pass together: 16 of them cost 8 ms instead of 16 x 4. No
request is ever held back to fill a batch: a lone request runs at once, alone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

MAX_BATCH_REQUESTS = 16
MAX_MODELS_PER_ROUND = 4  # a round takes up to this many batches' worth of waiting requests, grouped by model


class InferenceThread:
    """Runs calls and invocations in arrival order on one daemon thread; each returns a Future."""

    def __init__(self, max_batch: int = MAX_BATCH_REQUESTS, name: str = "inference") -> None:
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        """`fn(*args)` on the inference thread (the model's loading goes here, so its OpenMP team is this one)."""
        future: Future = Future()
        self._queue.put(("call", future, fn, args))
        return future

    def invoke(self, handlers: Any, body: bytes, content_type: str, accept: str) -> Future:
        """`handlers.invoke(body, content_type, accept)`, possibly batched with other waiting invocations."""
        future: Future = Future()
        self._queue.put(("invoke", future, handlers, (body, content_type, accept)))
        return future

    def _run(self) -> None:
        pending: tuple[Any, ...] | None = None
        while True:
            item = pending or self._queue.get()
            pending = None
            if item[0] == "call":
                _settle(item[1], item[2], *item[3])
                continue
            waiting = [item]
            while len(waiting) < self.max_batch * MAX_MODELS_PER_ROUND:  # only what is already waiting: nobody
                try:                                                     # waits for a batch to fill
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more[0] != "invoke":
                    pending = more  # a call (a model's load): next, in order
                    break
                waiting.append(more)
            # A multi-model endpoint's requests arrive interleaved: each model's go through one pass together.
            for group in _by_handlers(waiting):
                for start in range(0, len(group), self.max_batch):
                    self._invoke(group[start:start + self.max_batch])

    @staticmethod
    def _invoke(batch: list[tuple[Any, ...]]) -> None:
        handlers = batch[0][2]
        futures = [entry[1] for entry in batch if entry[1].set_running_or_notify_cancel()]
        requests = [entry[3] for entry in batch if entry[1] in futures]
        try:
            outcomes = handlers.invoke_many(requests)
        except BaseException as exc:  # invoke_many settles each request itself; this is a bug in it
            outcomes = [exc] * len(requests)
        for future, outcome in zip(futures, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _by_handlers(items: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Invocations grouped by the handlers they go to, in order of each group's first arrival."""
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for item in items:
        groups.setdefault(id(item[2]), []).append(item)
    return list(groups.values())


def _settle(future: Future, fn: Callable[..., Any], *args: Any) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # delivered to the caller, who decides
        future.set_exception(exc)
