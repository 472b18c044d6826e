"""`map_prefix`: the function gets the local path of each cached shard (or
chunk), over a local directory and over real MinIO."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

import quarry

pytestmark = pytest.mark.timeout(180)


def line_count(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def write_shards(directory, n, lines):
    os.makedirs(directory, exist_ok=True)
    contents = {}
    for i in range(n):
        body = "".join("shard %d line %d\n" % (i, j) for j in range(lines * (i + 1)))
        with open(os.path.join(directory, "part-%02d.txt" % i), "w") as f:
            f.write(body)
        contents["part-%02d.txt" % i] = body
    return contents


def test_map_prefix_over_a_local_directory(client, tmp_path):
    contents = write_shards(str(tmp_path / "data"), 5, 100)
    results = dict(client.map_prefix(line_count, str(tmp_path / "data") + "/"))
    assert results == {key: body.count("\n") for key, body in contents.items()}


def test_map_prefix_in_chunks_reads_every_line_once(client, tmp_path):
    contents = write_shards(str(tmp_path / "data"), 3, 2000)

    def lines(path):
        with open(path) as f:
            return f.read().splitlines()

    results = dict(client.map_prefix(lines, str(tmp_path / "data") + "/", chunk_size=8192))
    assert len(results) > len(contents), "large objects were split"
    seen = sorted(line for chunk in results.values() for line in chunk)
    assert seen == sorted(line for body in contents.values() for line in body.splitlines())


def test_map_prefix_passes_extra_arguments_and_refs(client, tmp_path):
    write_shards(str(tmp_path / "data"), 2, 10)
    words = client.put({"shard": "SHARD"})

    def tagged(path, ref, suffix=""):
        with open(path) as f:
            return f.readline().replace("shard", ref["shard"]).strip() + suffix

    results = dict(client.map_prefix(tagged, str(tmp_path / "data") + "/", words, suffix="!"))
    assert results == {"part-00.txt": "SHARD 0 line 0!", "part-01.txt": "SHARD 1 line 0!"}


def minio_binary():
    path = os.environ.get("QUARRY_MINIO_BIN") or os.path.expanduser("~/.cache/quarry/bin/minio")
    if not os.access(path, os.X_OK):
        pytest.fail("no MinIO binary at %s: run scripts/minio.sh first" % path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def minio():
    workdir = tempfile.mkdtemp(prefix="quarry-py-minio-")
    port, console = free_port(), free_port()
    user, password = "quarrypy", "quarry-python-tests-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
    env.update(MINIO_ROOT_USER=user, MINIO_ROOT_PASSWORD=password, MINIO_BROWSER="off",
               MINIO_UPDATE="off", MINIO_CI_CD="on")
    log = open(os.path.join(workdir, "minio.log"), "wb")
    server = subprocess.Popen(
        [minio_binary(), "server", os.path.join(workdir, "data"),
         "--address", "127.0.0.1:%d" % port, "--console-address", "127.0.0.1:%d" % console],
        env=env, stdout=log, stderr=log,
    )
    endpoint = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/minio/health/live", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("MinIO did not start; see %s/minio.log" % workdir)
            time.sleep(0.2)
    yield {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": user,
        "AWS_SECRET_ACCESS_KEY": password,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    server.terminate()
    server.wait(15)
    log.close()


def test_map_prefix_over_real_minio(minio, tmp_path, monkeypatch):
    import boto3
    s3 = boto3.client(
        "s3",
        endpoint_url=minio["AWS_ENDPOINT_URL"],
        aws_access_key_id=minio["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=minio["AWS_SECRET_ACCESS_KEY"],
        region_name=minio["AWS_REGION"],
    )
    s3.create_bucket(Bucket="pydata")
    expected = {}
    for i in range(6):
        body = "".join("row %d %d\n" % (i, j) for j in range(50 + i))
        s3.put_object(Bucket="pydata", Key="logs/part-%d.txt" % i, Body=body.encode())
        expected["part-%d.txt" % i] = body.count("\n")
    s3.put_object(Bucket="pydata", Key="other/skip.txt", Body=b"not under the prefix\n")
    # The embedded workers read the store settings from the environment.
    for name, value in minio.items():
        monkeypatch.setenv(name, value)
    with quarry.Client(n_workers=2) as client:
        first = dict(client.map_prefix(line_count, "s3://pydata/logs/"))
        assert first == expected
        # A second job over the same prefix, on the same workers.
        again = dict(client.map_prefix(line_count, "s3://pydata/logs/"))
        assert again == expected
