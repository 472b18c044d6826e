"""quarry's Python client, with dask.distributed's API.

    from quarry import Client

    client = Client()                 # an embedded cluster, like LocalCluster
    x = client.submit(inc, 10)
    print(x.result())
    print(client.gather(client.map(inc, range(1000))))

Python functions run on warm interpreters in the workers (one per slot,
kept from task to task); Rust functions registered in the workers are
called by name: ``client.submit("inc", 10)``. See docs/python.md.
"""

from ._native import QuarryError, TaskFailed, __version__
from ._client import Client, Future, as_completed, wait
from ._cluster import LocalCluster
from ._errors import CancelledError, RemoteTraceback, TaskError
from ._pickling import Ref

__all__ = [
    "CancelledError",
    "Client",
    "Future",
    "LocalCluster",
    "QuarryError",
    "Ref",
    "RemoteTraceback",
    "TaskError",
    "TaskFailed",
    "__version__",
    "as_completed",
    "wait",
]
