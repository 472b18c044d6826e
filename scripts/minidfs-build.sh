#!/usr/bin/env bash
# Builds the HDFS test helper (integration/minidfs: a MiniDFSCluster and a
# Hadoop FileSystem client, pinned to hadoop-client-minicluster 3.5.0) once per
# machine and prints its class path.
#
#   scripts/minidfs-build.sh    # -> ~/.cache/quarry/minidfs/<hash>/classes:<hash>/lib/*
#
# Maven keeps the Hadoop jars in ~/.m2; the build goes to
# $QUARRY_TOOLS_DIR/../minidfs/<hash of the helper's sources> (default
# ~/.cache/quarry/minidfs/<hash>), so a changed helper is rebuilt and an
# unchanged one is reused. Needs Java 17 and Maven. stdout carries nothing
# but the class path; Maven's output goes to stderr only if the build fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
helper="$root/integration/minidfs"

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "minidfs-build.sh: $tool is needed to build the HDFS test helper (Java 17 and Maven)" >&2
        exit 1
    fi
done

hash=$(cd "$helper" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
cache=${QUARRY_MINIDFS_CACHE:-${HOME:?HOME is not set}/.cache/quarry/minidfs}
out="$cache/$hash"
classpath="$out/classes:$out/lib/*"

if [ -f "$out/.built" ]; then
    echo "$classpath"
    exit 0
fi
mkdir -p "$cache"
# Parallel callers wait for one build instead of racing it.
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/.built" ]; then
    echo "$classpath"
    exit 0
fi
rm -rf "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! mvn -B -q -f "$helper/pom.xml" -Dquarry.minidfs.out="$out" package >"$log" 2>&1; then
    echo "minidfs-build.sh: the Maven build of $helper failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
touch "$out/.built"
# Builds of older helper sources only take room (about 100 MiB each).
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" -exec rm -rf {} +
echo "$classpath"
