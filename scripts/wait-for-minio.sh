#!/usr/bin/env bash
# Waits until a MinIO server answers its liveness probe, without `mc` or curl:
# a plain HTTP/1.0 request over bash's /dev/tcp.
#
#   scripts/wait-for-minio.sh [ENDPOINT] [TIMEOUT_SECONDS]
#
# ENDPOINT defaults to $AWS_ENDPOINT_URL, else http://127.0.0.1:9000; the timeout
# defaults to 60 seconds. Exits 0 once GET /minio/health/live returns 200, and 1
# (with a message) if that does not happen in time.
set -euo pipefail

endpoint=${1:-${AWS_ENDPOINT_URL:-http://127.0.0.1:9000}}
limit=${2:-60}

case "$endpoint" in
    http://*) authority=${endpoint#http://} ;;
    *)
        echo "wait-for-minio: only http:// endpoints can be probed without curl (got $endpoint)" >&2
        exit 2
        ;;
esac
authority=${authority%%/*}
host=${authority%:*}
port=${authority##*:}
if [ "$host" = "$authority" ]; then
    port=80
fi

# One probe: connect, ask, read the status line. Runs in a subshell so that a
# failed connection does not end the script.
probe() {
    (
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        printf 'GET /minio/health/live HTTP/1.0\r\nHost: %s\r\n\r\n' "$authority" >&3
        IFS= read -r -t 5 status <&3 || exit 1
        case "$status" in
            "HTTP/1."?" 200"*) exit 0 ;;
            *) exit 1 ;;
        esac
    ) 2>/dev/null
}

deadline=$((SECONDS + limit))
until probe; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "wait-for-minio: $endpoint/minio/health/live did not answer 200 within ${limit}s" >&2
        exit 1
    fi
    sleep 0.2
done
