"""The run's byte budget: bounded, in turn (a large message is not starved), and stoppable."""

from __future__ import annotations

import threading

import pytest

from mailmig_tui.engine.account import ByteBudget, Cancelled

WAIT_S = 5.0


def acquire_in_thread(budget: ByteBudget, n: int, order: list[int], cancel: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            budget.acquire(n, cancel)
        except Cancelled:
            order.append(-n)
            return
        order.append(n)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        done.wait(0.01)
    pytest.fail(f"timed out waiting for {what}")


def waiting(budget: ByteBudget) -> int:
    with budget._cond:
        return len(budget._turns)


def test_a_large_request_is_served_before_later_small_ones_that_would_fit() -> None:
    budget, cancel, order = ByteBudget(10), threading.Event(), []
    budget.acquire(6, cancel)  # another stream's batch in flight
    big = acquire_in_thread(budget, 8, order, cancel)  # does not fit beside it: waits
    wait_for(lambda: waiting(budget) == 1, "the large request to wait")
    small = acquire_in_thread(budget, 2, order, cancel)  # would fit (6 + 2), but comes after
    wait_for(lambda: waiting(budget) == 2, "the small request to queue behind")
    assert order == []

    budget.release(6)
    big.join(WAIT_S)
    small.join(WAIT_S)

    assert order == [8, 2]  # in turn; and both fit together (8 + 2 = 10)
    assert budget.peak == 10


def test_one_message_larger_than_the_whole_budget_goes_alone() -> None:
    budget, cancel, order = ByteBudget(10), threading.Event(), []
    budget.acquire(3, cancel)
    huge = acquire_in_thread(budget, 25, order, cancel)
    wait_for(lambda: waiting(budget) == 1, "the huge request to wait")
    budget.release(3)
    huge.join(WAIT_S)
    assert order == [25]
    after = acquire_in_thread(budget, 1, order, cancel)
    wait_for(lambda: waiting(budget) == 1, "the next request to wait for the huge one")
    budget.release(25)
    after.join(WAIT_S)
    assert order == [25, 1]


def test_a_waiting_request_stops_with_the_run_and_lets_the_next_one_through() -> None:
    budget, order = ByteBudget(10), []
    stop, keep = threading.Event(), threading.Event()
    budget.acquire(9, keep)
    stopped = acquire_in_thread(budget, 5, order, stop)
    wait_for(lambda: waiting(budget) == 1, "the request to wait")
    small = acquire_in_thread(budget, 1, order, keep)  # fits, but waits its turn
    wait_for(lambda: waiting(budget) == 2, "the second request to queue")

    stop.set()
    stopped.join(WAIT_S)
    small.join(WAIT_S)

    assert order == [-5, 1]
    assert waiting(budget) == 0
