"""dask.distributed's side of `quarry bench noop`: the same measurements on a
LocalCluster with the same number of worker processes (1 thread each).

    python3 bench/noop/dask_noop.py --tasks 20000 --workers 2 --roundtrips 300

Prints one JSON object with the same keys as `quarry bench noop --json`.
"""

import argparse
import json
import time


def noop(x):
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--roundtrips", type=int, default=300)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(noop, range(1000), pure=False))  # warm up
        started = time.perf_counter()
        client.gather(client.map(noop, range(args.tasks), pure=False))
        seconds = time.perf_counter() - started
        latencies = []
        for i in range(args.roundtrips):
            t = time.perf_counter()
            client.submit(noop, i, pure=False).result()
            latencies.append((time.perf_counter() - t) * 1e6)
        latencies.sort()

        def pct(p):
            return int(latencies[round((len(latencies) - 1) * p)]) if latencies else 0

        print(json.dumps({
            "bench": "dask-noop",
            "tasks": args.tasks,
            "workers": args.workers,
            "seconds": seconds,
            "tasks_per_sec": args.tasks / seconds,
            "roundtrip_p50_us": pct(0.50),
            "roundtrip_p99_us": pct(0.99),
        }))


if __name__ == "__main__":
    main()
