"""A streaming spine: a decode thread, the caller's processing, finishing workers, an encode thread.

Decoding and encoding (PyAV releases the GIL in FFmpeg) overlap with face processing, so a
2-core machine keeps both cores busy. Processing takes items in batches of consecutive frames
(``run_batches``), so a GPU model sees the faces of several frames in one call; the work that
does not depend on earlier frames (``finish``: swap, enhance, watermark) runs on worker threads
while the next batch is analysed. Items leave in order. Queues are bounded, so at most ``depth``
items wait for processing and ``depth`` batches for encoding, whatever the video's length. An
exception in any thread stops the others and is re-raised in the caller; KeyboardInterrupt in the
caller stops the threads too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

_DONE = object()
_JOIN_TIMEOUT_S = 10.0


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class StreamEngine(Generic[T, U]):
    """Run ``produce -> process [-> finish] -> consume`` with ``produce`` and ``consume`` on their own
    threads and ``finish`` on a pool of worker threads."""

    def __init__(self, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth

    def run(
        self,
        produce: Iterable[T],
        process: Callable[[T], U],
        consume: Callable[[U], None],
    ) -> None:
        """One item at a time."""
        self.run_batches(produce, lambda items: [process(item) for item in items], consume, 1)

    def run_batches(
        self,
        produce: Iterable[T],
        process: Callable[[list[T]], list[U]],
        consume: Callable[[U], None],
        batch: int,
        finish: Callable[[list[U]], list[U]] | None = None,
        workers: int = 1,
        begins: Callable[[T], bool] | None = None,
    ) -> None:
        """``process`` gets up to ``batch`` consecutive items on the calling thread, in order, and
        returns one result per item; a batch is shorter only at the end, or when the next item
        ``begins`` one (so batches can line up with frame numbers whatever frame a run starts on).
        ``finish``, when given, then takes each batch of results on one of ``workers`` threads, so
        batch k is finished while batch k + 1 is processed (for work that does not depend on the
        frames before it); results still leave in order."""
        if batch < 1 or workers < 1:
            raise ValueError("batch must be >= 1 and workers >= 1")
        stop = threading.Event()
        inbox: queue.Queue[object] = queue.Queue(self.depth)
        outbox: queue.Queue[object] = queue.Queue(self.depth)
        consumer_error: list[BaseException] = []
        pool = ThreadPoolExecutor(workers, thread_name_prefix="masquerade-finish") if finish else None

        def put(q: queue.Queue[object], item: object) -> bool:
            # Never block forever: give up as soon as the run is stopping.
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def producer() -> None:
            try:
                for item in produce:
                    if not put(inbox, item):
                        return
                put(inbox, _DONE)
            except BaseException as error:  # handed to the caller
                put(inbox, _Failure(error))

        def consumer() -> None:
            try:
                for pending in _drain(outbox, stop):
                    results = pending.result()  # type: ignore[attr-defined]  # waits for its worker
                    for result in results:
                        if stop.is_set():  # the run failed: do not encode frames that will be thrown away
                            return
                        consume(result)
            except BaseException as error:  # handed to the caller
                consumer_error.append(error)
                stop.set()

        threads = [
            threading.Thread(target=producer, name="masquerade-decode", daemon=True),
            threading.Thread(target=consumer, name="masquerade-encode", daemon=True),
        ]
        try:
            # Started inside the try: an interrupt that lands while they start still stops them, so the
            # decoder never outlives the reader it decodes from.
            for thread in threads:
                thread.start()
            for items in chunks(_drain(inbox, stop), batch, begins):  # type: ignore[arg-type]
                if consumer_error:
                    break
                results = process(items)  # type: ignore[arg-type]
                if len(results) != len(items):
                    raise ValueError(f"process returned {len(results)} results for {len(items)} items")
                pending = pool.submit(_checked, finish, results) if pool and finish else _Done(results)
                if not put(outbox, pending):
                    break
            put(outbox, _DONE)
            threads[1].join()
        finally:
            stop.set()
            # The consumer returns within one queue poll once stopped; wait for it fully, so the
            # caller never closes the writer under a thread still inside it.
            _join(threads[1])
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            _join(threads[0], _JOIN_TIMEOUT_S)
        if consumer_error:
            raise consumer_error[0]


def _join(thread: threading.Thread, timeout: float | None = None) -> None:
    if thread.ident is not None:  # started
        thread.join(timeout)


class _Done:
    """A batch that needs no finishing, with a Future's ``result``."""

    def __init__(self, results: list[object]) -> None:
        self._results = results

    def result(self) -> list[object]:
        return self._results


def _checked(finish: Callable[[list[U]], list[U]], results: list[U]) -> list[U]:
    finished = finish(results)
    if len(finished) != len(results):
        raise ValueError(f"finish returned {len(finished)} results for {len(results)} items")
    return finished


def chunks(items: Iterable[T], size: int, begins: Callable[[T], bool] | None = None) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items; one is shorter at the end, or before an item that
    ``begins`` a list."""
    chunk: list[T] = []
    for item in items:
        if chunk and begins is not None and begins(item):
            yield chunk
            chunk = []
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _drain(box: queue.Queue[object], stop: threading.Event) -> Iterator[object]:
    """Items of ``box`` until the end marker; a failure marker re-raises its exception."""
    while True:
        try:
            item = box.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        if item is _DONE:
            return
        if isinstance(item, _Failure):
            raise item.error
        yield item
