"""create_worker: a function on its own thread, its callbacks, result, errors and stop as signals."""

import threading
import time

from mangagan_app.gui.function_worker import create_worker, running


def count_to(n, *, progress, should_stop):
    for i in range(1, n + 1):
        if should_stop():
            return f"stopped at {i - 1}"
        progress(i, n)
        time.sleep(0.01)
    return threading.current_thread() is not threading.main_thread()


def refuse(name):
    raise ValueError(f"{name}: no such face")


def test_a_function_reports_and_returns_from_its_own_thread(qtbot):
    reports, returned = [], []
    # Slots given to create_worker are connected before the thread starts: nothing is missed.
    create_worker(
        count_to,
        5,
        callbacks=("progress",),
        stoppable=True,
        connect={"reported": lambda name, values: reports.append((name, values)), "returned": returned.append},
    )
    qtbot.waitUntil(lambda: bool(returned), timeout=10000)
    assert returned == [True]  # it ran off the GUI thread
    assert reports == [("progress", (i, 5)) for i in range(1, 6)]


def test_an_exception_arrives_as_errored_and_nothing_is_returned(qtbot):
    returned, errors = [], []
    create_worker(refuse, "face.png", connect={"returned": returned.append, "errored": errors.append})
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "face.png: no such face"
    qtbot.waitUntil(lambda: running(refuse) == 0)
    assert returned == []


def test_interruption_reaches_the_function_as_should_stop_and_the_worker_is_kept_until_it_ends(qtbot):
    worker = create_worker(count_to, 10_000, callbacks=("progress",), stoppable=True)
    qtbot.waitSignal(worker.reported, timeout=10000).wait()
    assert running(count_to) == 1
    with qtbot.waitSignal(worker.returned, timeout=10000) as done:
        worker.requestInterruption()
    assert done.args[0].startswith("stopped at ")
    qtbot.waitUntil(lambda: running(count_to) == 0)
