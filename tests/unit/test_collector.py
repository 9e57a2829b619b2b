"""collector.paused(): the cyclic collector is off inside, back as it was after, across nesting and threads."""

from __future__ import annotations

import gc
import threading

import pytest

from nertune.collector import paused, pausing


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_off_inside_on_after_and_nested_pauses_end_with_the_outer_one():
    with paused():
        assert not gc.isenabled()
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the inner pause ended the outer one's"
    assert gc.isenabled()


def test_a_caller_that_disabled_the_collector_keeps_it_disabled():
    gc.disable()
    with paused():
        pass
    assert not gc.isenabled()


def test_an_exception_still_turns_it_back_on():
    with pytest.raises(ZeroDivisionError):
        with paused():
            1 / 0
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_turn_it_on_only_when_both_have_left():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with paused():
            first_in.set()
            second_in.wait(5)
        seen["after first left"] = gc.isenabled()
        first_out.set()

    def second():
        first_in.wait(5)
        with paused():
            second_in.set()
            first_out.wait(5)
            seen["while second inside"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after first left": False, "while second inside": False}
    assert gc.isenabled()


def test_pausing_runs_the_function_inside_a_pause_and_keeps_its_name():
    @pausing
    def inside() -> bool:
        return gc.isenabled()

    assert inside() is False and inside.__name__ == "inside" and gc.isenabled()
