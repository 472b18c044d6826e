# The source document's first program, with only the import line changed
# (dask.distributed -> quarry). Run it against an embedded cluster:
#
#   python3 examples/python/inc.py
#
# or against a running scheduler and workers (quarry scheduler; quarry
# worker tcp://HOST:8786 --nprocs 12):
#
#   QUARRY_SCHEDULER=HOST:8786 python3 examples/python/inc.py
#
# QUARRY_INC_LOOP shortens the loop (the tests run the program with it).
import os

from quarry import Client

LOOP = int(os.environ.get("QUARRY_INC_LOOP", 10000000))

client = Client(os.environ.get("QUARRY_SCHEDULER"))

def inc(x):
  for i in range(LOOP):
    x += i
  return x

x = client.submit(inc, 10)
print(x.result())

L = client.map(inc, range(1000))

ga = client.gather(L)
print(ga)

for l in L:
  print(l.result())

client.close()
