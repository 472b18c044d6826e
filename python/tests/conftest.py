"""Fixtures: an embedded cluster, and real `quarry scheduler` + `quarry
worker` processes (the binary from target/debug, or $QUARRY_BIN)."""

import os
import socket
import subprocess
import sys
import time
import types

import pytest

import quarry

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def quarry_bin():
    path = os.environ.get("QUARRY_BIN") or os.path.join(REPO, "target", "debug", "quarry")
    if not os.access(path, os.X_OK):
        pytest.fail("no quarry binary at %s: run `cargo build -p quarry-cli` first" % path)
    return path


def clean_env():
    """This environment without the machine's QUARRY_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_workers(client, n, timeout=30):
    deadline = time.monotonic() + timeout
    while len(client.workers()) < n:
        if time.monotonic() > deadline:
            pytest.fail("%d workers did not register within %d s" % (n, timeout))
        time.sleep(0.05)


def stop(process, timeout=15):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class Processes:
    """A scheduler and `n` workers as processes, on a loopback port."""

    def __init__(self, root, n=2, env=None):
        self.root = root
        self.address = "tcp://127.0.0.1:%d" % free_port()
        self.staging = str(root / "staging")
        os.makedirs(self.staging, exist_ok=True)
        self.env = dict(clean_env(), **(env or {}))
        binary = quarry_bin()
        self.scheduler = subprocess.Popen(
            [binary, "scheduler", "--listen", self.address, "--dashboard", "none"],
            env=self.env,
        )
        self.workers = [
            subprocess.Popen(
                [
                    binary, "worker", self.address,
                    "--name", "py-%d" % i,
                    "--nthreads", "1",
                    "--python", sys.executable,
                    "--cache-dir", str(root / ("worker-%d" % i)),
                ],
                env=self.env,
            )
            for i in range(n)
        ]
        self.n = n

    def client(self):
        client = quarry.Client(self.address, staging=self.staging)
        wait_for_workers(client, self.n)
        return client

    def close(self):
        for worker in self.workers:
            stop(worker)
        stop(self.scheduler)


@pytest.fixture(scope="session")
def processes(tmp_path_factory):
    cluster = Processes(tmp_path_factory.mktemp("processes"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def embedded():
    client = quarry.Client(n_workers=2)
    yield client
    client.close()


@pytest.fixture(scope="session")
def process_client(processes):
    client = processes.client()
    yield client
    client.close()


@pytest.fixture(params=["embedded", "processes"])
def client(request):
    """Each test that takes it runs against both clusters."""
    if request.param == "embedded":
        return request.getfixturevalue("embedded")
    return request.getfixturevalue("process_client")


@pytest.fixture
def staging_dir(client, request):
    """Where `client` stages large values (a local directory here)."""
    if client.cluster is not None:
        return client.cluster.staging
    return request.getfixturevalue("processes").staging


def run_program(path, env, timeout):
    """Runs a Python program to its end; its stdout."""
    done = subprocess.run(
        [sys.executable, path], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture
def program():
    return types.SimpleNamespace(run=run_program, repo=REPO, clean_env=clean_env)
