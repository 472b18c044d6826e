#!/usr/bin/env python3
"""Trains one random forest on the adult dataset and prints its accuracy.

One task of the grid search: quarry runs it once per parameter set, with the
dataset staged as a local file (a broadcast input, fetched once per worker).
The last line of stdout is JSON, which quarry records as the task's result:

    {"accuracy": 0.85, "train_accuracy": 0.86, "n_train": 39073, ...}

Reads the UCI layout: adult.data or adult.test from the UCI repository (rows
with "?" are kept, "?" being a category of its own; adult.test's trailing "."
on labels and its header line are handled), or the synthetic file that
generate.py writes. Needs numpy and scikit-learn (pip install scikit-learn).
"""

import argparse
import json
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
NUMERIC = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
TEST_SHARE = 0.2
SPLIT_SEED = 0


def load(path):
    """Features (one-hot encoded categoricals, numbers as they are) and labels."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = [v.strip() for v in line.split(",")]
            if len(fields) != len(COLUMNS):
                continue  # blank lines, and adult.test's "|1x3 Cross validator" header
            rows.append(fields)
    if not rows:
        raise SystemExit(f"{path}: no rows in the adult layout ({len(COLUMNS)} comma-separated fields)")
    labels = np.array([r[-1].rstrip(".") == ">50K" for r in rows], dtype=np.int8)
    blocks = []
    for index, name in enumerate(COLUMNS[:-1]):
        values = [r[index] for r in rows]
        if name in NUMERIC:
            blocks.append(np.array(values, dtype=np.float64)[:, None])
        else:
            categories, codes = np.unique(values, return_inverse=True)
            blocks.append(np.eye(len(categories), dtype=np.float64)[codes])
    return np.hstack(blocks), labels


def parse_optional_int(text):
    return None if text.lower() in ("none", "null") else int(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--criterion", default="gini")
    p.add_argument("--max-depth", type=parse_optional_int, default=None)
    p.add_argument("--min-samples-leaf", type=int, default=1)
    p.add_argument("--n-estimators", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    X, y = load(a.data)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(y))
    n_test = int(len(y) * TEST_SHARE)
    test, train = order[:n_test], order[n_test:]
    model = RandomForestClassifier(n_estimators=a.n_estimators, criterion=a.criterion,
                                   max_depth=a.max_depth, min_samples_leaf=a.min_samples_leaf,
                                   random_state=a.seed, n_jobs=1)
    started = time.perf_counter()
    model.fit(X[train], y[train])
    fit_seconds = time.perf_counter() - started
    print(json.dumps({
        "accuracy": round(float(model.score(X[test], y[test])), 6),
        "train_accuracy": round(float(model.score(X[train], y[train])), 6),
        "n_train": int(len(train)),
        "n_test": int(n_test),
        "fit_seconds": round(fit_seconds, 3),
    }))


if __name__ == "__main__":
    main()
