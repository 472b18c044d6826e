"""``Client`` and ``Future``: dask.distributed's API over quarry."""

import json

from . import _native
from ._cluster import LocalCluster
from ._errors import task_exception
from ._pickling import AUTO_PUT_BYTES, VERSIONS, Ref, dumps_call, dumps_value, is_small, loads

_UNSET = object()


class Future:
    """A submitted task's eventual result."""

    __slots__ = ("_native", "_pickled", "_value", "__weakref__")

    def __init__(self, native, pickled):
        self._native = native
        self._pickled = pickled
        self._value = _UNSET

    @property
    def key(self):
        """The task's key."""
        return self._native.key

    def done(self):
        """Whether the task ended, with a value or an error."""
        return self._native.done()

    def result(self, timeout=None):
        """The task's value, waiting up to ``timeout`` seconds (``None``:
        until it ends). Re-raises the task's exception, with the remote
        traceback as its ``__cause__``; ``TimeoutError`` if it did not end
        in time."""
        if self._value is not _UNSET:
            return self._value
        try:
            raw = self._native.result(timeout)
        except _native.TaskFailed as failed:
            exc = task_exception(failed)
        else:
            self._value = loads(raw) if self._pickled else json.loads(raw)
            return self._value
        # Raised outside the handler: the remote traceback is the cause, and
        # the native TaskFailed is no context worth showing.
        raise exc

    def exception(self, timeout=None):
        """The exception the task raised, or ``None`` if it succeeded."""
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as exc:
            return exc
        return None

    def cancel(self):
        """Cancels the task: a queued one never runs, a running one is
        stopped (its interpreter is restarted). ``result()`` then raises
        ``CancelledError``."""
        self._native.cancel()

    def __reduce__(self):
        raise TypeError(
            "a quarry.Future cannot be passed to a task (dask's task graphs are not "
            "supported); pass future.result() instead"
        )

    def __repr__(self):
        state = "finished" if self.done() else "pending"
        return "<quarry.Future: %s, key: %s>" % (state, self.key)


class _AsCompleted:
    """Yields futures (or ``(future, result)`` pairs) as they end, each
    once, then stops."""

    def __init__(self, futures, with_results):
        self._futures = list(futures)
        self._with_results = with_results
        self._indexes = _native.NativeAsCompleted([f._native for f in self._futures])

    def __iter__(self):
        return self

    def __next__(self):
        index = next(self._indexes)
        future = self._futures[index]
        if self._with_results:
            return future, future.result()
        return future


def as_completed(futures, with_results=False):
    """Iterates over ``futures`` in the order they end (as dask's
    ``as_completed``); with ``with_results``, yields ``(future, result)``."""
    return _AsCompleted(futures, with_results)


def wait(futures, timeout=None):
    """Waits until every future ended (``TimeoutError`` after ``timeout``
    seconds); returns them."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not future._native.wait(left):
            raise TimeoutError("the futures did not all end within %s s" % timeout)
    return futures


def _address(address):
    if "://" in address:
        return address
    return "tcp://" + address


class Client:
    """A connection to a quarry scheduler, like ``distributed.Client``.

    ``Client()`` starts an embedded cluster (a ``LocalCluster``) and
    connects to it; ``Client("HOST:8786")`` or ``Client("tcp://HOST:8786")``
    connects to a running ``quarry scheduler``; ``Client(cluster)`` to a
    ``LocalCluster``. Values over the inline cap go through the staging
    store: ``staging`` (a store URL or a local path shared with the
    workers), else ``QUARRY_STAGING``; an embedded cluster has its own.
    """

    def __init__(self, address=None, staging=None, timeout=10, **cluster_kwargs):
        self._own_cluster = None
        if address is None:
            address = self._own_cluster = LocalCluster(**cluster_kwargs)
        elif cluster_kwargs:
            raise TypeError(
                "unexpected arguments %s: only an embedded cluster (no address) takes them"
                % sorted(cluster_kwargs)
            )
        if isinstance(address, LocalCluster):
            self.cluster = address
            staging = staging or address.staging
            address = address.scheduler_address
        else:
            self.cluster = None
            address = _address(address)
        try:
            self._native = _native.NativeClient(address, staging, float(timeout))
        except BaseException:
            if self._own_cluster is not None:
                self._own_cluster.close()
            raise

    @property
    def scheduler_address(self):
        """The scheduler's address."""
        return self._native.address

    def _put_large(self, values, cache):
        """``values`` with each one too large to travel inline put into the
        store (once per object in ``cache``) and replaced by its ``Ref``."""
        out = []
        for value in values:
            if is_small(value):
                out.append(value)
                continue
            key = id(value)
            if key in cache:
                out.append(cache[key][1])
                continue
            pickled = dumps_value(value)
            replacement = value
            if len(pickled) > AUTO_PUT_BYTES:
                replacement = Ref(*self._native.put(pickled))
            # Keep the object alive so its id is not reused in this call.
            cache[key] = (value, replacement)
            out.append(replacement)
        return out

    def _calls(self, fn, arg_tuples, kwargs):
        cache = {}
        kwarg_names = list(kwargs)
        kwarg_values = self._put_large(list(kwargs.values()), cache)
        kwargs = dict(zip(kwarg_names, kwarg_values))
        calls = []
        for args in arg_tuples:
            pickle_bytes, refs = dumps_call(fn, self._put_large(args, cache), kwargs)
            calls.append((pickle_bytes, [r._encoded for r in refs]))
        return calls

    def submit(self, fn, *args, retries=0, priority=0, **kwargs):
        """Runs ``fn(*args, **kwargs)`` on a worker and returns its
        ``Future``. ``fn`` is a Python callable (run on a warm interpreter)
        or the name of a Rust function registered in the workers, such as
        ``"inc"``. ``retries``: attempts after a failed one (an exception,
        an interpreter that died); ``priority``: higher runs first."""
        return self._submit(fn, [args], kwargs, retries, priority)[0]

    def map(self, fn, *iterables, retries=0, priority=0, **kwargs):
        """``submit(fn, *items, **kwargs)`` for each item of
        ``zip(*iterables)``, submitted in batches; the futures are in order."""
        if not iterables:
            raise TypeError("map needs at least one iterable")
        return self._submit(fn, list(zip(*iterables)), kwargs, retries, priority)

    def _submit(self, fn, arg_tuples, kwargs, retries, priority):
        if isinstance(fn, str):
            if kwargs and any(arg_tuples):
                raise TypeError(
                    "a Rust function takes one argument: give positional or keyword arguments, not both"
                )
            args = [json.dumps(_named_argument(a, kwargs)) for a in arg_tuples]
            natives = self._native.submit_named(fn, args, retries, priority)
            return [Future(n, False) for n in natives]
        if not callable(fn):
            raise TypeError("fn must be callable or the name of a Rust function, not %r" % (fn,))
        calls = self._calls(fn, arg_tuples, kwargs)
        natives = self._native.submit_python(calls, VERSIONS, retries, priority)
        return [Future(n, True) for n in natives]

    def gather(self, futures, errors="raise"):
        """The results of ``futures`` (a list of futures, or one), in order.
        ``errors="skip"`` leaves failed tasks out instead of raising."""
        if isinstance(futures, Future):
            return futures.result()
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        results = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception:
                if errors == "raise":
                    raise
        return results

    def put(self, obj):
        """Pickles ``obj`` into the store once and returns a ``Ref`` to pass
        to tasks instead of the object: each worker downloads it once, each
        interpreter loads it once."""
        return Ref(*self._native.put(dumps_value(obj)))

    def map_prefix(self, fn, url, *args, chunk_size=None, glob=None, retries=0, **kwargs):
        """Runs ``fn(path, *args, **kwargs)`` once per object under ``url``
        (``s3://bucket/prefix/``, ``file://`` or a local directory), where
        ``path`` is the local file of the object, cached on the worker (or,
        with ``chunk_size``, of one line-aligned chunk of at least that many
        bytes). ``glob`` filters keys below the prefix (``*.csv``,
        ``**/*.txt``). Yields ``(key, result)`` in the order tasks end, keys
        relative to the prefix (``@start-end`` appended for a chunk);
        stopping early cancels the rest."""
        pickle_bytes, refs = dumps_call(fn, args, kwargs, broadcast=True)
        broadcast = [("ref-%d" % i, r._encoded) for i, r in enumerate(refs)]
        native = self._native.map_prefix(
            pickle_bytes, VERSIONS, url, broadcast, chunk_size, glob, retries
        )
        # Submitted already: the listing runs while the caller iterates.
        return ((key, loads(raw)) for key, raw in native)

    def workers(self):
        """The names of the connected workers."""
        return self._native.workers()

    def close(self):
        """Closes the client (and stops its embedded cluster, if it started
        one)."""
        native, self._native = getattr(self, "_native", None), None
        if native is not None:
            native.close()
        if self._own_cluster is not None:
            self._own_cluster.close()
            self._own_cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<quarry.Client: %s>" % (self._native.address if self._native else "closed")


def _named_argument(args, kwargs):
    if kwargs:
        return kwargs
    if len(args) == 1:
        return args[0]
    if not args:
        return None
    return list(args)
