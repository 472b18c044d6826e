"""The adult grid search (the quick grid of examples/adult-grid-search, 16
random forests), three ways in the same run, 2 workers of 1 slot each:

- quarry with warm interpreters (examples/python/adult_grid_search.py's
  `fit`, the dataset put once and loaded once per interpreter);
- quarry with command tasks (`quarry run quick.yaml`: a new interpreter,
  imports and data loading in every task);
- dask.distributed, LocalCluster of 2 processes, the dataset scattered to
  every worker once.

Prints wall time, the sum of fit times, per-task overhead against the fit
time, and the ratios; nothing is asserted.

    bench/python/run.sh adult
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))

import adult_grid_search as example  # noqa: E402


def param_sets():
    grid = example.GRIDS["quick"]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def summary(name, elapsed, fits, workers):
    fit_sum = sum(fits)
    overhead = (elapsed * workers - fit_sum) / len(fits)
    return {
        "name": name,
        "seconds": round(elapsed, 2),
        "fit_sum_seconds": round(fit_sum, 2),
        "overhead_per_task_seconds": round(overhead, 3),
        "overhead_share_of_fit": round(overhead / (fit_sum / len(fits)), 3),
    }


def warm(data, workers):
    import quarry

    started = time.perf_counter()
    with quarry.Client(n_workers=workers, threads_per_worker=1) as client:
        dataset = client.put(example.load_dataset(data))
        sets = param_sets()
        results = client.gather(client.map(example.fit, [dataset] * len(sets), sets))
    return summary("quarry warm interpreters", time.perf_counter() - started,
                   [r["fit_seconds"] for r in results], workers)


def command(binary, workers):
    out = tempfile.mkdtemp(prefix="quarry-adult-bench-")
    results_path = out + ".json"
    job = os.path.join(ROOT, "examples", "adult-grid-search", "quick.yaml")
    # The job's `python3` is this interpreter (with numpy and scikit-learn).
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    started = time.perf_counter()
    subprocess.run(
        [binary, "run", job, "--workers", str(workers), "--nthreads", "1",
         "--work-dir", out, "--results", "json"],
        check=True, stdout=open(results_path, "w"), stderr=subprocess.DEVNULL, env=env,
    )
    elapsed = time.perf_counter() - started
    fits = []
    with open(results_path) as f:
        rows = json.load(f)
    for row in rows:
        result = row.get("result") or {}
        fits.append(result["fit_seconds"])
    return summary("quarry command tasks", elapsed, fits, workers)


def dask(data, workers):
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    started = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dataset = client.scatter(example.load_dataset(data), broadcast=True)
        sets = param_sets()
        results = client.gather(client.map(example.fit, [dataset] * len(sets), sets, pure=False))
    return summary("dask.distributed", time.perf_counter() - started,
                   [r["fit_seconds"] for r in results], workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quarry", default=os.path.join(ROOT, "target", "release", "quarry"))
    args = parser.parse_args()
    # The command job reads this file (quick.yaml's broadcast input).
    data = example.DATA
    if not os.path.exists(data):
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "adult-grid-search",
                                                     "generate.py")], check=True)
    runs = [warm(data, args.workers), command(args.quarry, args.workers)]
    try:
        runs.append(dask(data, args.workers))
    except ImportError as e:
        print("dask: not installed (%s)" % e)
    for run in runs:
        print(json.dumps(run), flush=True)
    base = runs[0]["seconds"]
    for run in runs[1:]:
        print("%s: %.1f s, warm quarry %.1f s = %.2fx faster"
              % (run["name"], run["seconds"], base, run["seconds"] / base))
    print("warm quarry per-task overhead: %.0f%% of the mean fit time"
          % (100 * runs[0]["overhead_share_of_fit"]))


if __name__ == "__main__":
    main()
