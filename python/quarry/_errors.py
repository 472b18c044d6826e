"""How a task's failure is raised in the client."""

import base64
import concurrent.futures

import cloudpickle

from ._native import QuarryError

# What the worker's interpreter puts between a task's traceback and its
# pickled exception (see crates/worker/src/python_worker.py).
_EXCEPTION_MARKER = "\n--quarry-exception--\n"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a task, on the worker; it is
    the ``__cause__`` of the exception ``Future.result()`` raises."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return "\n\nRemote traceback (on the worker):\n" + self.text


class TaskError(QuarryError):
    """A task failed without a Python exception to re-raise: its
    interpreter died, it timed out, a Rust function failed, or the worker
    refused it (such as a version mismatch)."""

    def __init__(self, key, kind, message):
        super().__init__("task %s failed (%s): %s" % (key, kind, message))
        self.key = key
        self.kind = kind
        self.message = message


class CancelledError(concurrent.futures.CancelledError):
    """The task was cancelled."""


def task_exception(failed):
    """The exception to raise for a ``TaskFailed`` from the native side: the
    task's own exception (with its remote traceback as ``__cause__``) when it
    raised one, else a ``TaskError`` or ``CancelledError``."""
    key, kind, message = failed.args
    if kind == "Cancelled":
        return CancelledError("task %s was cancelled" % key)
    text, marker, pickled = message.partition(_EXCEPTION_MARKER)
    if marker:
        try:
            exc = cloudpickle.loads(base64.b64decode(pickled))
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteTraceback(text)
            return exc
    error = TaskError(key, kind, text)
    if marker:
        error.__cause__ = RemoteTraceback(text)
    return error
