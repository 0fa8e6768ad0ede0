"""The inbox: bounds, both overflow policies with exact counts, batch hand-off, end of
stream, async waiters."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from kstlib.websocket.inbox import Inbox, InboxFinished, _Resume


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Inbox(0)
    with pytest.raises(ValueError, match="queue_overflow"):
        Inbox(10, "drop_newest")


def test_batch_in_order_and_take_all() -> None:
    inbox = Inbox(10)
    assert inbox.put_batch([1, 2, 3]) == 3
    assert inbox.put_batch([4]) == 1
    assert inbox.get_batch(timeout=0) == [1, 2, 3, 4]
    assert inbox.get_batch(timeout=0.01) == []


def test_drop_oldest_counts_exactly() -> None:
    inbox = Inbox(5, "drop_oldest")
    assert inbox.put_batch(list(range(8))) == 8
    assert inbox.dropped == 3
    assert inbox.put_batch([8, 9]) == 2
    assert inbox.dropped == 5
    assert inbox.get_batch(timeout=0) == [5, 6, 7, 8, 9]


def test_block_policy_waits_and_loses_nothing() -> None:
    inbox = Inbox(3, "block")
    assert inbox.put_batch([0, 1, 2, 3, 4], timeout=0.05) == 3
    assert inbox.blocked_puts == 1
    got: list[int] = []
    done = threading.Event()

    def consumer() -> None:
        while len(got) < 100:
            got.extend(inbox.get_batch(timeout=5))
        done.set()

    t = threading.Thread(target=consumer)
    t.start()
    rest = [3, 4, *range(5, 100)]
    while rest:
        n = inbox.put_batch(rest, timeout=5)
        rest = rest[n:]
    assert done.wait(10)
    t.join()
    assert got == list(range(100))
    assert inbox.dropped == 0


def test_interrupt_releases_a_blocked_put() -> None:
    inbox = Inbox(1, "block")
    inbox.put_batch([0])
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(inbox.put_batch([1, 2])))
    t.start()
    inbox.interrupt_put()
    t.join(10)
    assert not t.is_alive()
    assert result == [0]
    inbox.resume_put()
    assert inbox.put_batch([1], timeout=0.01) == 0  # still full, waits then gives up


def test_force_put_exceeds_the_bound_once() -> None:
    inbox = Inbox(2, "block")
    inbox.put_batch([1, 2])
    assert inbox.put_batch([3, 4], force=True) == 2
    assert len(inbox) == 4


def test_finish_after_drain_with_error() -> None:
    inbox = Inbox(10)
    inbox.put_batch(["a"])
    err = RuntimeError("gone")
    inbox.finish(err)
    assert inbox.get_batch() == ["a"]
    with pytest.raises(InboxFinished) as info:
        inbox.get_batch()
    assert info.value.error is err
    inbox.reopen()
    assert inbox.get_batch(timeout=0.01) == []


def test_finish_wakes_a_blocked_consumer() -> None:
    inbox = Inbox(10)
    out: list[BaseException] = []

    def consumer() -> None:
        try:
            inbox.get_batch()
        except InboxFinished as exc:
            out.append(exc)

    t = threading.Thread(target=consumer)
    t.start()
    inbox.finish(None)
    t.join(10)
    assert len(out) == 1 and isinstance(out[0], InboxFinished) and out[0].error is None


def test_finish_wakes_every_blocked_consumer() -> None:
    """Two threads iterating one stream, then the end: both see it (a lone notify would
    leave one waiting forever)."""
    inbox = Inbox(10)
    ended: list[InboxFinished] = []

    def consumer() -> None:
        try:
            inbox.get_batch()
        except InboxFinished as exc:
            ended.append(exc)

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    # both are inside Condition.wait (CPython keeps one waiter lock per waiting thread)
    assert wait_until(lambda: len(inbox._not_empty._waiters) == 2)  # type: ignore[attr-defined]
    inbox.finish(None)
    for t in threads:
        t.join(10)
    assert len(ended) == 2 and not any(t.is_alive() for t in threads)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_extend_front_keeps_order() -> None:
    inbox = Inbox(10)
    inbox.put_batch([3, 4])
    inbox.extend_front([1, 2])
    assert inbox.get_batch(timeout=0) == [1, 2, 3, 4]


def test_async_waiter_woken_from_another_thread() -> None:
    inbox = Inbox(10)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.05, lambda: threading.Thread(target=inbox.put_batch, args=([7, 8],)).start()
        )
        return await asyncio.wait_for(inbox.get_batch_async(), 10)

    assert asyncio.run(main()) == [7, 8]


def test_async_waiter_sees_finish_and_cancel_cleans_up() -> None:
    inbox = Inbox(10)

    async def main() -> None:
        task = asyncio.ensure_future(inbox.get_batch_async())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert inbox._async_waiters == []
        inbox.finish(ValueError("x"))
        with pytest.raises(InboxFinished):
            await inbox.get_batch_async()

    asyncio.run(main())


def test_byte_budget_blocks_by_bytes_and_takes_one_huge_message() -> None:
    inbox = Inbox(1000, "block", max_bytes=100)
    assert inbox.put_batch(list(range(10)), timeout=0.0, item_bytes=30) == 3  # 90 <= 100
    assert inbox.queued_bytes == 90 and len(inbox) == 3
    assert inbox.get_batch() == [0, 1, 2] and inbox.queued_bytes == 0
    assert inbox.put_batch(["huge"], timeout=0.0, item_bytes=10_000) == 1  # empty: one fits
    assert inbox.put_batch(["next"], timeout=0.0, item_bytes=1) == 0  # over the budget
    assert inbox.queued_bytes == 10_000


def test_byte_budget_drop_oldest_counts_exactly() -> None:
    inbox = Inbox(1000, "drop_oldest", max_bytes=100)
    inbox.put_batch(list(range(10)), item_bytes=25)
    assert inbox.drain() == [6, 7, 8, 9] and inbox.dropped == 6
    inbox.put_batch(["a"], item_bytes=500)  # alone over the budget: the newest stays
    inbox.put_batch(["b"], item_bytes=1)
    assert inbox.drain() == ["b"] and inbox.dropped == 7


def test_put_back_items_count_the_average_of_the_batch_taken() -> None:
    inbox = Inbox(1000, "block", max_bytes=1000)
    inbox.put_batch(list(range(4)), item_bytes=100)
    batch = inbox.get_batch()
    inbox.extend_front(batch[2:])
    assert inbox.queued_bytes == 200 and len(inbox) == 2


class RacedFiller:
    """A filler whose read is overtaken: while it reads its batch, the producer takes the
    reading back and queues what came next (``newer``)."""

    item_bytes = 10
    lends = 1

    def __init__(self, inbox: Inbox, batch: list[str], newer: list[str]) -> None:
        self.inbox, self.batch, self.newer = inbox, batch, newer

    def fill(self, timeout: float | None) -> list[str] | None:
        self.inbox.put_batch(self.newer, item_bytes=10)
        return self.batch

    def fill_async(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[object]) -> bool:
        async def read() -> None:  # on the loop, later: the batch, and the producer's next
            fut.set_result(self.batch)
            self.inbox.put_batch(self.newer, item_bytes=10)

        # In a task, so the consumer resumes in a later loop turn (completed outside any
        # task it would resume inside set_result, and nothing could come between).
        self.reader = loop.create_task(read())
        return True

    def stop_async(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[object]) -> None:
        pass


def test_a_filled_batch_goes_before_what_was_queued_after_it() -> None:
    inbox = Inbox(100)
    inbox.filler = RacedFiller(inbox, ["read-1", "read-2"], ["newer"])
    assert inbox.get_batch(timeout=5) == ["read-1", "read-2", "newer"]
    assert inbox.queued_bytes == 0


def test_a_filled_batch_goes_before_what_was_queued_after_it_asyncio() -> None:
    inbox = Inbox(100)
    inbox.filler = RacedFiller(inbox, ["read-1"], ["newer"])
    assert asyncio.run(inbox.get_batch_async(max_items=1)) == ["read-1"]
    assert inbox.drain() == ["newer"]


def test_a_batch_read_for_a_consumer_cancelled_meanwhile_is_kept_in_order() -> None:
    # The filler completes the wait, then the consumer is cancelled (a timeout, a task
    # cancelled) before it resumes: the batch must stay in the inbox, ahead of newer.
    inbox = Inbox(100)
    inbox.filler = RacedFiller(inbox, ["read-1", "read-2"], ["newer"])

    async def main() -> None:
        task = asyncio.ensure_future(inbox.get_batch_async())
        await asyncio.sleep(0)  # the task awaits its wait; the filler's read is next
        asyncio.get_running_loop().call_soon(task.cancel)  # right after the read
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert inbox.drain() == ["read-1", "read-2", "newer"]


class LateLender:
    """A filler that is refused at first, and lent right after the refusal (before the
    consumer waits on the queue): the producer's wake-up finds nobody waiting yet."""

    item_bytes = 10

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.lends = 0
        self.tries = 0

    def _refused_then_lent(self) -> bool:
        self.tries += 1
        if self.tries > 1:
            return False
        self.lends += 1  # the engine lends now, and wakes whoever waits: nobody yet
        self.inbox.wake_waiters()
        return True

    def fill(self, timeout: float | None) -> list[str] | None:
        return None if self._refused_then_lent() else ["read"]

    def fill_async(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[object]) -> bool:
        if self._refused_then_lent():
            return False
        loop.call_soon(fut.set_result, ["read"])
        return True

    def stop_async(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[object]) -> None:
        pass


def test_a_lend_between_a_refusal_and_the_wait_is_not_missed() -> None:
    inbox = Inbox(100)
    inbox.filler = filler = LateLender(inbox)
    assert inbox.get_batch(timeout=3) == ["read"]  # not [] after 3 s
    assert filler.tries == 2


def test_a_lend_between_a_refusal_and_the_wait_is_not_missed_asyncio() -> None:
    inbox = Inbox(100)
    inbox.filler = filler = LateLender(inbox)

    async def main() -> list[str]:
        return await asyncio.wait_for(inbox.get_batch_async(), 3)

    assert asyncio.run(main()) == ["read"]  # no timeout
    assert filler.tries == 2


# -- the asyncio wait on a filler (_Resume) -------------------------------------------------

Complete = Callable[[asyncio.Future[object], list[str]], object]


def _resume_case(complete: Complete) -> list[str]:
    """Await a _Resume in a task and complete it with ``complete`` from a plain loop
    callback; the order of events shows when the task resumed."""
    events: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = _Resume(loop=loop)

        async def consumer() -> None:
            try:
                events.append(f"got {await fut}")
            except asyncio.CancelledError:
                events.append("cancelled")

        task = loop.create_task(consumer())
        await asyncio.sleep(0)  # the consumer awaits fut

        def callback() -> None:
            complete(fut, events)
            events.append("callback returned")

        loop.call_soon(callback)
        await task

    asyncio.run(main())
    return events


def test_a_wait_completed_outside_a_task_resumes_its_task_at_once() -> None:
    def complete(fut: asyncio.Future[object], events: list[str]) -> None:
        fut.set_result(7)
        events.append("set")

    assert _resume_case(complete) == ["got 7", "set", "callback returned"]


def test_a_cancelled_wait_resumes_its_task_later_with_the_cancellation() -> None:
    def complete(fut: asyncio.Future[object], events: list[str]) -> None:
        fut.cancel()
        events.append("cancel returned")

    assert _resume_case(complete) == ["cancel returned", "callback returned", "cancelled"]


def test_a_wait_completed_inside_a_task_resumes_its_task_in_a_later_turn() -> None:
    # Resuming it inside the setter's step would enter a task within a task.
    def complete(fut: asyncio.Future[object], events: list[str]) -> None:
        async def setter() -> None:
            fut.set_result(7)
            events.append("set")

        tasks.append(fut.get_loop().create_task(setter()))

    tasks: list[asyncio.Task[None]] = []
    assert _resume_case(complete) == ["callback returned", "set", "got 7"]


def test_other_callbacks_of_a_resumed_wait_run_as_asyncio_runs_them() -> None:
    def complete(fut: asyncio.Future[object], events: list[str]) -> None:
        fut.add_done_callback(lambda f: events.append(f"callback {f.result()}"))
        fut.add_done_callback(print)
        assert fut.remove_done_callback(print) == 1
        fut.set_result(7)

    # The awaiting task's resumption is the one run at once; the others are scheduled.
    assert _resume_case(complete) == ["got 7", "callback returned", "callback 7"]
