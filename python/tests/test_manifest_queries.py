"""The manifest queries that docs/job-spec.md shows, run as written with
DuckDB and polars (engines independent of quarry) over the manifest of a
real `quarry run`, and checked against a count made here with plain
Python."""

import collections
import os
import re
import subprocess

import duckdb
import pytest

from conftest import REPO, clean_env, quarry_bin


def documented(language):
    """The first `language` code block of the manifest-query section."""
    with open(os.path.join(REPO, "docs", "job-spec.md")) as f:
        text = f.read()
    section = text.split("#### Summing the counts over the manifest", 1)[1]
    return re.search(r"```%s\n(.*?)```" % language, section, re.S).group(1)


@pytest.mark.timeout(120)
def test_the_documented_queries_sum_a_word_count_job(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "more").mkdir(parents=True)
    texts = {
        "a.txt": "the river and the sea\nthe end\n",
        "more/b.txt": "The sea, the sky; and THE river\n",
        # Enough distinct words that its result is over the inline cap
        # and stored as _result.json.
        "big.txt": "".join("w%d the\n" % i for i in range(12_000)),
    }
    for name, text in texts.items():
        (data / name).write_text(text)
    (tmp_path / "job.yaml").write_text(
        "name: wordcount\n"
        "input:\n  prefix: ./data/**/*.txt\n"
        "function: wordcount\n"
        "output: ./out/wordcount/\n"
    )
    run = subprocess.run(
        [quarry_bin(), "run", "job.yaml", "--workers", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr
    stored = list((tmp_path / "out" / "wordcount").glob("**/_result.json"))
    assert stored, "the big file's result should be stored by reference"

    expected = collections.Counter()
    for text in texts.values():
        expected.update(word.lower() for word in text.split())
    top = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:10]

    monkeypatch.chdir(tmp_path)
    rows = duckdb.sql(documented("sql")).fetchall()
    assert [(word, int(n)) for word, n in rows] == top, "duckdb"

    scope = {}
    exec(documented("python"), scope)
    counts = scope["counts"]
    assert list(counts.head(10).iter_rows()) == top, "polars"
    assert counts["n"].sum() == sum(expected.values())
