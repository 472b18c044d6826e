"""A plain parallel-GET floor for `quarry bench prefix --floor`: reads
every object under an s3:// prefix once with boto3 (an S3 client that is
not quarry's), WORKERS x 4 requests at a time, discarding the bytes, and
prints `seconds=S` for the read alone (listing excluded).

    python3 s3_floor.py s3://bucket/prefix/ [CONCURRENCY]

Reaches the endpoint in AWS_ENDPOINT_URL with the AWS_* credentials.
"""

import concurrent.futures
import os
import sys
import time

import boto3


def main():
    url = sys.argv[1]
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))

    def read(key):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        total = 0
        for chunk in body.iter_chunks(1 << 20):
            total += len(chunk)
        return total

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(read, keys))
    seconds = time.perf_counter() - start
    print(f"objects={len(keys)} bytes={total}")
    print(f"seconds={seconds:.6f}")


if __name__ == "__main__":
    main()
