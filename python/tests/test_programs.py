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
