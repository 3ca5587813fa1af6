import threading
import time

import pytest

from masquerade.engine import StreamEngine


def test_items_leave_in_order_and_all_arrive():
    out: list[int] = []
    StreamEngine(depth=2).run(range(100), lambda x: x * 2, out.append)
    assert out == [x * 2 for x in range(100)]


def test_memory_is_bounded_by_depth():
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def produce():
        nonlocal in_flight, peak
        for i in range(200):
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            yield i

    def consume(_):
        nonlocal in_flight
        time.sleep(0.0005)
        with lock:
            in_flight -= 1

    StreamEngine(depth=3).run(produce(), lambda x: x, consume)
    # inbox + outbox + one in process + one in consume + one being produced
    assert peak <= 3 * 2 + 3


@pytest.mark.parametrize("where", ["produce", "process", "consume"])
def test_errors_in_any_stage_reach_the_caller_and_threads_end(where):
    def produce():
        for i in range(1000):
            if where == "produce" and i == 5:
                raise ValueError("boom")
            yield i

    def process(x):
        if where == "process" and x == 5:
            raise ValueError("boom")
        return x

    def consume(x):
        if where == "consume" and x == 5:
            raise ValueError("boom")

    before = threading.active_count()
    with pytest.raises(ValueError, match="boom"):
        StreamEngine(depth=2).run(produce(), process, consume)
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_keyboard_interrupt_in_processing_stops_everything():
    def process(x):
        if x == 3:
            raise KeyboardInterrupt
        return x

    with pytest.raises(KeyboardInterrupt):
        StreamEngine(depth=2).run(iter(range(10_000)), process, lambda _: None)


def test_batches_are_consecutive_full_and_leave_in_order():
    seen: list[list[int]] = []
    out: list[int] = []

    def process(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [x * 10 for x in items]

    StreamEngine(depth=2).run_batches(range(23), process, out.append, batch=5)
    assert seen == [list(range(i, min(i + 5, 23))) for i in range(0, 23, 5)]  # last batch shorter
    assert out == [x * 10 for x in range(23)]


def test_batches_can_line_up_with_item_numbers_from_any_start():
    """A run that starts on item 40 batches as a run from 0 does, so a segment renders as the whole."""
    seen: list[list[int]] = []
    out: list[int] = []

    def process(items: list[int]) -> list[int]:
        seen.append(list(items))
        return items

    StreamEngine(depth=2).run_batches(range(40, 50), process, out.append, batch=3,
                                      begins=lambda x: x % 3 == 0)
    assert seen == [[40, 41], [42, 43, 44], [45, 46, 47], [48, 49]]
    assert out == list(range(40, 50))


def test_a_batch_process_must_answer_every_item():
    with pytest.raises(ValueError, match="2 results for 3 items"):
        StreamEngine(depth=2).run_batches(range(9), lambda items: items[:2], lambda _: None, batch=3)
    with pytest.raises(ValueError, match="batch must be"):
        StreamEngine().run_batches(range(3), lambda items: items, lambda _: None, batch=0)


def test_finishing_workers_overlap_yet_items_leave_in_order():
    import random

    out: list[int] = []
    threads: set[str] = set()

    def finish(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        time.sleep(random.uniform(0.0, 0.01))  # later batches may finish first
        return [x + 1000 for x in items]

    StreamEngine(depth=3).run_batches(range(60), lambda items: items, out.append, 4, finish=finish, workers=3)
    assert out == [x + 1000 for x in range(60)]
    assert len(threads) > 1 and all(name.startswith("masquerade-finish") for name in threads)


def test_a_failing_finish_stops_the_run_and_reaches_the_caller():
    consumed: list[int] = []

    def finish(items: list[int]) -> list[int]:
        if 20 in items:
            raise RuntimeError("render failed")
        return items

    with pytest.raises(RuntimeError, match="render failed"):
        StreamEngine(depth=2).run_batches(range(100), lambda items: items, consumed.append, 5,
                                          finish=finish, workers=2)
    assert consumed == list(range(20))  # nothing at or after the failed batch was encoded
