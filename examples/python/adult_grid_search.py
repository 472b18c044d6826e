"""The source document's grid search on warm interpreters: the quick grid of
examples/adult-grid-search (16 random forests on the adult census data), with
the dataset put into the store once and loaded once per interpreter.

    python3 examples/adult-grid-search/generate.py   # writes data/adult.data
    python3 examples/python/adult_grid_search.py     # embedded cluster, 2 workers
    python3 examples/python/adult_grid_search.py --grid full --scheduler HOST:8786

Compare with `quarry run examples/adult-grid-search/quick.yaml`, which starts a
new interpreter (and imports numpy and scikit-learn, and parses the data) for
every task. Needs numpy and scikit-learn on the client and the workers.
"""

import argparse
import itertools
import os
import sys
import time

from quarry import Client, as_completed

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "adult-grid-search", "data", "adult.data")

GRIDS = {
    # examples/adult-grid-search/quick.yaml
    "quick": {
        "criterion": ["gini", "entropy"],
        "max_depth": [4, 12],
        "min_samples_leaf": [1, 20],
        "n_estimators": [10, 25],
    },
    # examples/adult-grid-search/job.yaml: the source document's 3000 sets
    "full": {
        "criterion": ["gini", "entropy"],
        "max_depth": [2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
        "min_samples_leaf": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
        "n_estimators": list(range(10, 151, 10)),
    },
}


def load_dataset(path):
    """The features and labels, encoded once on the client (train.py's
    encoding, so that results compare)."""
    sys.path.insert(0, os.path.join(HERE, "..", "adult-grid-search"))
    import train

    return train.load(path)


def fit(dataset, params):
    """One task: fit a forest with `params`, score it on the held-out rows.
    `dataset` is a quarry.Ref: each interpreter loads it once, then keeps it
    for the tasks after."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    X, y = dataset
    order = np.random.RandomState(0).permutation(len(y))
    n_test = int(len(y) * 0.2)
    test, train = order[:n_test], order[n_test:]
    model = RandomForestClassifier(random_state=0, n_jobs=1, **params)
    started = time.perf_counter()
    model.fit(X[train], y[train])
    fit_seconds = time.perf_counter() - started
    return {
        "params": params,
        "accuracy": round(float(model.score(X[test], y[test])), 6),
        "fit_seconds": round(fit_seconds, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="quick")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--scheduler", default=os.environ.get("QUARRY_SCHEDULER"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    grid = GRIDS[args.grid]
    sets = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    started = time.perf_counter()
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        client = Client(n_workers=args.workers)
    with client:
        dataset = client.put(load_dataset(args.data))
        futures = client.map(fit, [dataset] * len(sets), sets, retries=1)
        results = [result for _, result in as_completed(futures, with_results=True)]
    elapsed = time.perf_counter() - started
    results.sort(key=lambda r: r["accuracy"], reverse=True)
    for r in results[:5]:
        print("%.4f  %s  (fit %.2f s)" % (r["accuracy"], r["params"], r["fit_seconds"]))
    fits = sum(r["fit_seconds"] for r in results)
    print(
        "%d fits in %.1f s (sum of fit times %.1f s)" % (len(results), elapsed, fits),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
