"""The source document's programs, as examples/python holds them, run
against an embedded cluster and against real processes."""

import os

import pytest

pytestmark = pytest.mark.timeout(300)

LOOP = 1000


def expected_inc(x):
    return x + sum(range(LOOP))


def check_inc_output(stdout):
    lines = stdout.splitlines()
    assert int(lines[0]) == expected_inc(10)
    assert lines[1] == str([expected_inc(x) for x in range(1000)])
    assert [int(line) for line in lines[2:]] == [expected_inc(x) for x in range(1000)]


def test_inc_program_on_an_embedded_cluster(program):
    env = dict(program.clean_env(), QUARRY_INC_LOOP=str(LOOP))
    path = os.path.join(program.repo, "examples", "python", "inc.py")
    check_inc_output(program.run(path, env, timeout=240))


def test_inc_program_against_scheduler_and_worker_processes(program, processes):
    env = dict(
        program.clean_env(),
        QUARRY_INC_LOOP=str(LOOP),
        QUARRY_SCHEDULER=processes.address,
    )
    path = os.path.join(program.repo, "examples", "python", "inc.py")
    check_inc_output(program.run(path, env, timeout=240))


def test_adult_grid_search_example_matches_a_local_fit(program, tmp_path):
    import sklearn  # noqa: F401  (the example needs it)
    import ast
    import importlib.util
    import subprocess
    import sys

    data = str(tmp_path / "adult.data")
    generate = os.path.join(program.repo, "examples", "adult-grid-search", "generate.py")
    subprocess.run([sys.executable, generate, "--rows", "2000", "--out", data], check=True,
                   capture_output=True, timeout=60)
    example = os.path.join(program.repo, "examples", "python", "adult_grid_search.py")
    try:
        done = subprocess.run([sys.executable, example, "--data", data], env=program.clean_env(),
                              capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as hung:
        stderr = hung.stderr.decode() if isinstance(hung.stderr, bytes) else (hung.stderr or "")
        pytest.fail("the example did not finish in 240 s; its stderr so far:\n" + stderr[-6000:])
    assert done.returncode == 0, done.stderr[-4000:]
    assert "16 fits in" in done.stderr
    best = done.stdout.splitlines()[0]
    accuracy, rest = best.split("  ", 1)
    params = ast.literal_eval(rest[: rest.index("}") + 1])
    # The same fit, run here without quarry, gives the same accuracy.
    spec = importlib.util.spec_from_file_location("adult_grid_search", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    local = module.fit(module.load_dataset(data), params)
    assert float(accuracy) == pytest.approx(local["accuracy"], abs=1e-4)
