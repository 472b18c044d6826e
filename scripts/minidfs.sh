#!/usr/bin/env bash
# Starts a real HDFS (Hadoop's MiniDFSCluster, 3.5.0) on 127.0.0.1, with its
# data in DIR, and runs until it is killed.
#
#   scripts/minidfs.sh DIR [--hosts h1,h2,..] [--datanodes N] [--replication R] [--block-size BYTES] [--ha]
#
# Once it accepts clients, the first line of stdout is hdfs://127.0.0.1:PORT.
# Further lines: `http 127.0.0.1:PORT` (the NameNode's web and WebHDFS
# address), `conf DIR/conf` (a core-site.xml and hdfs-site.xml naming this
# cluster, for HADOOP_CONF_DIR) and `datanodes N [hosts]`. Logs go to stderr.
# Started again on the same DIR it keeps the files (on new ports).
# --hosts names the DataNodes (one per name; all still listen on 127.0.0.1),
# which lets tests see which host holds which replica. --ha starts two
# NameNodes as the name service `minidfs-ns` (the second one active; the
# first line is still the active one's address, then `nameservice
# hdfs://minidfs-ns`, and conf/ defines the name service with
# fs.defaultFS = hdfs://minidfs-ns).
#
# The same helper is an HDFS client for tests (Hadoop's own FileSystem API):
#   scripts/minidfs.sh ls|cat|write|rm|locations URL, put LOCAL URL, read-all URL
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi
classpath=$("$(dirname "${BASH_SOURCE[0]}")/minidfs-build.sh")
command=serve
case "$1" in
    ls|cat|put|write|rm|locations|read-all) command=$1; shift ;;
esac
# Client commands read the cluster's settings (replication, block size) from
# $HADOOP_CONF_DIR, as Hadoop's own scripts do.
if [ "$command" != serve ] && [ -n "${HADOOP_CONF_DIR:-}" ]; then
    classpath="$HADOOP_CONF_DIR:$classpath"
fi
exec java -Xmx1g -cp "$classpath" quarry.minidfs.Main "$command" "$@"
