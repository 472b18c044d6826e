"""Python `inc` without the loop: 10,000 tasks on 2 workers (one slot each),
quarry's warm interpreters against dask.distributed's LocalCluster (2
worker processes, 1 thread each), in the same run. Prints each side's
tasks/s and a sequential round trip's median, then the ratios; nothing is
asserted.

    bench/python/run.sh [TASKS]
"""

import argparse
import json
import statistics
import sys
import time


def inc(x):
    return x + 1


def measure(client, tasks, roundtrips):
    # Warm up: every worker's interpreter (or process) started, code loaded.
    client.gather(client.map(inc, range(100, 164)))
    started = time.perf_counter()
    results = client.gather(client.map(inc, range(tasks)))
    elapsed = time.perf_counter() - started
    assert results[-1] == tasks, "wrong results"
    trips = []
    for i in range(roundtrips):
        t = time.perf_counter()
        client.submit(inc, 10_000 + i).result()
        trips.append(time.perf_counter() - t)
    return {
        "tasks": tasks,
        "seconds": round(elapsed, 3),
        "tasks_per_sec": round(tasks / elapsed, 1),
        "roundtrip_p50_us": round(statistics.median(trips) * 1e6),
    }


def run_quarry(tasks, workers, roundtrips):
    import quarry

    with quarry.Client(n_workers=workers, threads_per_worker=1) as client:
        return measure(client, tasks, roundtrips)


def run_dask(tasks, workers, roundtrips):
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        return measure(client, tasks, roundtrips)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--roundtrips", type=int, default=200)
    args = parser.parse_args()

    q = run_quarry(args.tasks, args.workers, args.roundtrips)
    print("quarry: " + json.dumps(q), flush=True)
    try:
        d = run_dask(args.tasks, args.workers, args.roundtrips)
    except ImportError as e:
        print("dask: not installed (%s); pip install 'dask[distributed]'" % e)
        return
    print("dask:   " + json.dumps(d), flush=True)
    print(
        "throughput: quarry %.0f/s vs dask %.0f/s = %.1fx"
        % (q["tasks_per_sec"], d["tasks_per_sec"], q["tasks_per_sec"] / d["tasks_per_sec"])
    )
    print(
        "round trip p50: quarry %d us vs dask %d us = %.1fx faster"
        % (
            q["roundtrip_p50_us"],
            d["roundtrip_p50_us"],
            d["roundtrip_p50_us"] / max(q["roundtrip_p50_us"], 1),
        )
    )


if __name__ == "__main__":
    sys.exit(main())
