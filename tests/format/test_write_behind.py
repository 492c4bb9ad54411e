import signal
import threading

import pytest

from fastload.format.write_behind import WriteBehind


def test_calls_run_in_submission_order_on_one_thread_other_than_the_callers():
    stage = WriteBehind(depth=3)
    seen = []
    for i in range(50):
        stage.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    stage.drain()
    stage.close()
    assert [i for i, _ in seen] == list(range(50))
    names = {name for _, name in seen}
    assert len(names) == 1 and threading.current_thread().name not in names


def test_a_failure_is_raised_on_the_callers_thread_and_later_calls_are_skipped():
    stage = WriteBehind(depth=1)
    ran = []

    def fail():
        raise OSError(28, "No space left on device")

    stage.submit(ran.append, 1)
    stage.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        for i in range(2, 10):  # the failure surfaces at the latest when the queue is full
            stage.submit(ran.append, i)
        stage.drain()
    stage.close()
    assert ran == [1]


def test_close_waits_for_queued_calls_and_does_not_raise_their_failure():
    stage = WriteBehind(depth=4)
    release = threading.Event()
    done = []
    stage.submit(release.wait)
    stage.submit(done.append, "written")
    stage.submit(lambda: 1 / 0)
    release.set()
    stage.close()  # a writer giving up has its own error to report
    assert done == ["written"]


def test_an_interrupt_while_the_caller_waits_for_the_stage_reaches_the_caller():
    stage = WriteBehind(depth=1)
    release = threading.Event()
    stage.submit(release.wait, 10)
    main = threading.get_ident()

    def interrupt():
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the main thread waiting in drain
        release.wait(5)  # (with the interrupt lost, drain would return once this lets the call end)
        release.set()

    helper = threading.Timer(0.2, interrupt)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        stage.drain()
    release.set()
    helper.join()
    stage.close()


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth"):
        WriteBehind(depth=0)
