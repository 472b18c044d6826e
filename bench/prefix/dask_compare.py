#!/usr/bin/env python3
"""The `quarry bench prefix` workload in dask.distributed + s3fs.

Maps a word count (or `wc -l`, to match `quarry bench prefix --command`)
over the `part-*.txt` shards under an S3 prefix, PASSES times, on a
LocalCluster of WORKERS single-threaded worker processes, reducing the
counts in the client as results complete. Every pass reads every shard from
the store: dask keeps no per-worker cache of external data.

Prints one JSON object per pass. With --quarry-results (the JSON lines
`quarry bench prefix --json` printed), also prints both side by side and the
ratio of pass-2 times (dask / quarry).

S3 settings come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION, as for quarry.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

import s3fs
from dask.distributed import Client, LocalCluster, as_completed


def filesystem():
    return s3fs.S3FileSystem(
        key=os.environ["AWS_ACCESS_KEY_ID"],
        secret=os.environ["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={
            "endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "region_name": os.environ.get("AWS_REGION", "us-east-1"),
        },
        use_listings_cache=False,
    )


def word_count(path):
    """What quarry's built-in `wordcount` returns for one shard."""
    data = filesystem().cat_file(path)
    return dict(Counter(data.decode("utf-8", "replace").lower().split()))


def linecount(path):
    """What quarry's built-in `linecount` returns for one shard."""
    return filesystem().cat_file(path).count(b"\n")


def line_count(path):
    """What `wc -l {input}` does, on a local copy as quarry's command gets."""
    data = filesystem().cat_file(path)
    with tempfile.NamedTemporaryFile() as staged:
        staged.write(data)
        staged.flush()
        out = subprocess.run(["wc", "-l", staged.name], capture_output=True, check=True)
    return int(out.stdout.split()[0])


def warm_up(path):
    """Imports s3fs and opens a connection in a worker, outside the timing
    (quarry's workers are likewise started before pass 1)."""
    return filesystem().size(path)


def run_pass(client, function, paths):
    started = time.perf_counter()
    futures = client.map(function, paths, pure=False)
    counted = 0
    tasks = 0
    for future in as_completed(futures):
        result = future.result()
        tasks += 1
        counted += sum(result.values()) if isinstance(result, dict) else result
        future.release()
    return time.perf_counter() - started, tasks, counted


def quarry_pass_seconds(path):
    seconds = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            report = json.loads(line)
            if report.get("bench") == "prefix":
                seconds[report["pass"]] = report["seconds"]
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="s3://bucket/prefix/")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--function", choices=["linecount", "wordcount", "wc-l"], default="linecount")
    parser.add_argument("--quarry-results", help="JSON lines from quarry bench prefix --json")
    args = parser.parse_args()

    fs = filesystem()
    prefix = args.url.removeprefix("s3://").rstrip("/")
    paths = sorted(fs.glob(f"{prefix}/part-*.txt"))
    total_bytes = sum(fs.size(p) for p in paths)
    if not paths:
        sys.exit(f"no part-*.txt under {args.url}: run quarry bench prefix first to seed it")
    function = {"linecount": linecount, "wordcount": word_count, "wc-l": line_count}[args.function]

    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    client = Client(cluster)
    client.run(warm_up, paths[0])
    times = {}
    try:
        for number in range(1, args.passes + 1):
            seconds, tasks, counted = run_pass(client, function, paths)
            times[number] = seconds
            print(json.dumps({
                "bench": "dask-prefix",
                "function": args.function,
                "pass": number,
                "seconds": seconds,
                "tasks": tasks,
                "input_bytes": total_bytes,
                "mib_per_sec": total_bytes / (1 << 20) / seconds,
                "counted": counted,
                "dask": __import__("dask").__version__,
            }), flush=True)
    finally:
        client.close()
        cluster.close()

    if args.quarry_results:
        quarry = quarry_pass_seconds(args.quarry_results)
        print(f"\n{'pass':>4}  {'quarry s':>10}  {'dask s':>10}  {'dask/quarry':>11}")
        for number in sorted(times):
            q = quarry.get(number)
            ratio = f"{times[number] / q:11.2f}" if q else f"{'-':>11}"
            q_text = f"{q:10.2f}" if q else f"{'-':>10}"
            print(f"{number:>4}  {q_text}  {times[number]:10.2f}  {ratio}")
        if 2 in quarry and 2 in times:
            print(f"\npass-2 ratio (dask / quarry): {times[2] / quarry[2]:.2f}")


if __name__ == "__main__":
    main()
