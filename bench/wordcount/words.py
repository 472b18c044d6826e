"""Helpers of bench/wordcount/run.sh: generate the text, time CPython's
count of it, and compare that count with quarry's."""
import json
import random
import sys
import time
from collections import Counter

WORDS = (
    "été château Öffnung naïve cœur élève garçon déjà où très "
    "λόγος ΟΔΟΣ θάλασσα Ήλιος φως νύχτα "
    "Москва привет слово Дом книга время "
    "東京 日本語 言葉 猫 "
    "the of and Data quarry"
).split()
SEPARATORS = [" "] * 12 + ["\n", "\t", "\u00a0", "\u3000", "  "]


def generate(path, megabytes):
    rng = random.Random(7)
    # Words with suffixes make a vocabulary of tens of thousands, so the
    # count's hash map matters as it does on real text.
    vocabulary = [w + (str(i) if i else "") for w in WORDS for i in range(600)]
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        while written < target:
            line = "".join(
                rng.choice(vocabulary) + rng.choice(SEPARATORS) for _ in range(2000)
            )
            out.write(line)
            written += len(line.encode("utf-8"))


def compare(path, quarry_results, quarry_s):
    start = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        expected = Counter(f.read().lower().split())
    cpython_s = time.perf_counter() - start
    with open(quarry_results, encoding="utf-8") as f:
        rows = [json.loads(line.rstrip(",\n")) for line in f if line.startswith("{")]
    got = Counter()
    for row in rows:
        got.update(row["result"])
    print(f"CPython Counter(text.lower().split()): {cpython_s:.2f} s")
    print(f"quarry run (wordcount, 1 worker, 1 slot): {quarry_s:.2f} s")
    print(f"quarry is {cpython_s / quarry_s:.2f}x CPython (target 5x)")
    print(json.dumps({
        "cpython_s": round(cpython_s, 3),
        "quarry_s": round(quarry_s, 3),
        "speedup": round(cpython_s / quarry_s, 2),
        "counts_match": got == expected,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], int(sys.argv[3]))
    else:
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
