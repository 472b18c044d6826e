"""The dask API against an embedded cluster and against real processes."""

import os
import sys
import time

import pytest

import quarry
from quarry import as_completed

pytestmark = pytest.mark.timeout(120)


def inc(x):
    return x + 1


def add(x, y=0, *, z=0):
    return x + y + z


class Boom(Exception):
    """An exception class of the test module (pickled by value)."""


def explode(message):
    raise Boom(message)


def test_submit_and_result(client):
    assert client.submit(inc, 10).result(timeout=60) == 11


def test_map_and_gather_in_order(client):
    futures = client.map(inc, range(200))
    assert client.gather(futures) == [i + 1 for i in range(200)]
    assert [f.result() for f in futures] == [i + 1 for i in range(200)]


def test_map_over_several_iterables_and_kwargs(client):
    futures = client.map(add, range(10), range(10, 20), z=100)
    assert client.gather(futures) == [x + y + 100 for x, y in zip(range(10), range(10, 20))]


def test_a_lambda_and_a_closure(client):
    offset = 1000

    def shifted(x):
        return x + offset

    assert client.submit(lambda x: x * 3, 7).result(timeout=60) == 21
    assert client.gather(client.map(shifted, range(5))) == [1000, 1001, 1002, 1003, 1004]


def test_rust_function_by_name(client):
    # The workers' built-in `inc` is the source document's loop, in Rust.
    expected = 10 + sum(range(10_000_000))
    assert client.submit("inc", 10).result(timeout=60) == expected
    assert client.submit("echo", {"a": [1, 2]}).result(timeout=60) == {"a": [1, 2]}


def test_a_task_that_raises_raises_its_exception_with_the_remote_traceback(client):
    future = client.submit(explode, "no luck")
    with pytest.raises(Boom, match="no luck") as raised:
        future.result(timeout=60)
    cause = raised.value.__cause__
    assert isinstance(cause, quarry.RemoteTraceback)
    assert "in explode" in cause.text and "Boom: no luck" in cause.text
    assert "in _run" not in cause.text, "the interpreter's own frames are left out"
    assert isinstance(future.exception(), Boom)
    # The interpreter lives on: the next task on it runs.
    assert client.submit(inc, 1).result(timeout=60) == 2


def test_gather_can_skip_errors(client):
    futures = [client.submit(inc, 1), client.submit(explode, "x"), client.submit(inc, 2)]
    assert client.gather(futures, errors="skip") == [2, 3]
    with pytest.raises(Boom):
        client.gather(futures)


def test_as_completed_yields_each_future_once_and_stops(client):
    futures = client.map(time.sleep, [0.3, 0.0, 0.1, 0.0])
    seen = list(as_completed(futures))
    assert sorted(f.key for f in seen) == sorted(f.key for f in futures)
    assert all(f.done() for f in seen)
    pairs = list(as_completed(client.map(inc, range(20)), with_results=True))
    assert sorted(r for _, r in pairs) == list(range(1, 21))


def test_result_timeout_and_cancel(client):
    future = client.submit(time.sleep, 60)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    assert not future.done()
    future.cancel()
    with pytest.raises(quarry.CancelledError):
        future.result(timeout=30)
    # The slot's interpreter was killed with the cancelled task; a new one
    # runs the next.
    assert client.gather(client.map(inc, range(4))) == [1, 2, 3, 4]


def counter():
    """How many tasks this interpreter ran, kept on an imported module."""
    sys.quarry_test_runs = getattr(sys, "quarry_test_runs", 0) + 1
    return os.getpid(), sys.quarry_test_runs


def test_interpreters_stay_warm(client):
    runs = client.gather(client.map(lambda _: counter(), range(20)))
    by_pid = {}
    for pid, n in runs:
        by_pid.setdefault(pid, []).append(n)
    # One interpreter per slot at most, each counting up across tasks.
    assert len(by_pid) <= 2
    assert max(n for _, n in runs) >= 10
    for counts in by_pid.values():
        assert sorted(counts) == list(range(min(counts), min(counts) + len(counts)))


def die_always():
    os.kill(os.getpid(), 9)


def die_once(marker):
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), 9)
    return os.getpid()


def test_an_interpreter_killed_mid_task_fails_only_that_attempt_which_is_retried(
    client, tmp_path
):
    marker = str(tmp_path / "died")
    pid = client.submit(die_once, marker, retries=1).result(timeout=60)
    with open(marker) as f:
        assert int(f.read()) != pid, "the retry ran on a new interpreter"
    # A dead interpreter is not the task's own failure: without retries the
    # task runs again too, as dask reruns the tasks of a dead worker.
    os.remove(marker)
    assert client.submit(die_once, marker).result(timeout=60) != pid
    # One that kills every interpreter it runs on fails once the worker-loss
    # budget is spent, saying how its interpreter died.
    with pytest.raises(quarry.TaskError, match="SIGKILL") as raised:
        client.submit(die_always).result(timeout=120)
    assert "next task starts a new interpreter" in str(raised.value)
    assert client.submit(inc, 41).result(timeout=60) == 42


def test_prints_do_not_disturb_the_pipe(client):
    def chatty(n):
        for i in range(n):
            print("line", i)
        sys.stdout.write("\x00" * 64)
        return n

    assert client.submit(chatty, 1000).result(timeout=60) == 1000


def test_a_result_over_the_inline_cap_comes_back_by_reference(client, staging_dir):
    data = client.submit(lambda n: bytes(range(256)) * n, 4096).result(timeout=60)
    assert data == bytes(range(256)) * 4096
    results = os.path.join(staging_dir, "results")
    assert any(files for _, _, files in os.walk(results)), "stored under the staging store"


def test_a_version_mismatch_fails_in_one_clear_line(client):
    import cloudpickle

    call = quarry._pickling.dumps_call(inc, (1,), {})
    native = client._native.submit_python(
        [(call[0], [])], ("2.7", cloudpickle.__version__, quarry.__version__)
    )
    with pytest.raises(quarry.TaskError) as raised:
        quarry.Future(native[0], True).result(timeout=60)
    message = raised.value.message
    assert "version mismatch" in message and "Python 2.7" in message
    assert "\n" not in message


def test_put_objects_are_loaded_once_per_interpreter(client):
    table = client.put({"rows": list(range(100_000))})
    assert isinstance(table, quarry.Ref)

    def look(ref, i):
        return os.getpid(), id(ref), ref["rows"][i]

    seen = client.gather(client.map(look, [table] * 12, range(12)))
    assert [row for _, _, row in seen] == list(range(12))
    ids = {}
    for pid, obj, _ in seen:
        ids.setdefault(pid, set()).add(obj)
    assert all(len(objs) == 1 for objs in ids.values()), ids


def test_a_100_mb_numpy_argument_goes_through_the_store(client, staging_dir):
    import numpy as np
    array = np.arange(100 * 1024 * 1024 // 8, dtype=np.float64)
    future = client.submit(lambda a: (a.nbytes, float(a.sum())), array)
    nbytes, total = future.result(timeout=120)
    assert nbytes == array.nbytes and total == float(array.sum())
    sizes = [
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(staging_dir)
        for name in files
    ]
    assert max(sizes) >= array.nbytes, "the array was put into the staging store"


def test_a_future_as_an_argument_is_refused_clearly(client):
    future = client.submit(inc, 1)
    with pytest.raises(TypeError, match="pass future.result"):
        client.submit(inc, future)
    assert future.result(timeout=60) == 2


def test_kwargs_reach_the_function_and_bad_calls_are_refused(client):
    assert client.submit(add, 1, y=2, z=3).result(timeout=60) == 6
    with pytest.raises(TypeError):
        client.submit(42)
    with pytest.raises(TypeError):
        client.map(inc)


@pytest.mark.timeout(120)
def test_a_worker_killed_with_sigkill_takes_its_interpreter_with_it(tmp_path):
    # Interpreters are started without fork (posix_spawn) and tie
    # themselves to the worker thread that started them: nothing of a
    # killed worker may keep running its task.
    import signal

    from conftest import Processes

    pid_file = str(tmp_path / "interpreter.pid")

    def note_pid_then_sleep(path):
        import os as _os
        import time as _time

        with open(path + ".tmp", "w") as f:
            f.write(str(_os.getpid()))
        _os.rename(path + ".tmp", path)
        _time.sleep(60)

    cluster = Processes(tmp_path, n=1)
    try:
        client = cluster.client()
        future = client.submit(note_pid_then_sleep, pid_file)
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        interpreter = int(open(pid_file).read())
        assert _alive(interpreter)
        cluster.workers[0].send_signal(signal.SIGKILL)
        cluster.workers[0].wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(interpreter):
            time.sleep(0.05)
        assert not _alive(interpreter), "the interpreter outlived its worker"
        future.cancel()
    finally:
        cluster.close()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
