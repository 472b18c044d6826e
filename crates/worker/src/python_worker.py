# The warm Python interpreter of one worker slot (the `quarry.python`
# executor). The worker starts it with `python -c <this file>` and talks to
# it over its standard input and a copy of its standard output, in frames of
# an 8-byte little-endian length followed by that many bytes:
#
#   interpreter -> worker, once: hello, JSON {"protocol", "python",
#       "cloudpickle"} (cloudpickle is null when it cannot be imported)
#   worker -> interpreter, per task: a JSON header {"inputs": [path, ...],
#       "broadcast": {name: path}, "shard": path or null}, then the pickled
#       (fn, args, kwargs), whose persistent ids ("quarry-ref", i) and
#       ("quarry-broadcast", name) are objects the client put
#   interpreter -> worker, per task: one status byte (0: the pickled
#       result follows; 1: an error text follows), then the body
#
# The task's own prints go to the worker's standard error: file descriptor 1
# is pointed there before any task runs, so nothing a task writes can break
# the frames. The interpreter runs task after task, so imports and module
# state stay warm; objects passed by reference (`Client.put`) are loaded
# once per interpreter and kept while they are used.
import base64
import io
import json
import os
import pickle
import struct
import sys
import traceback

PROTOCOL = 1
# Pickled exceptions travel inside the error text after this marker, so
# that the client can raise the task's own exception type.
EXCEPTION_MARKER = "\n--quarry-exception--\n"
# The most pickled exception bytes carried in an error text.
MAX_EXCEPTION_BYTES = 32 * 1024
# Objects loaded from references, by local path (content-pinned by the
# worker's cache), kept for the next tasks that use them.
MAX_LOADED = 8

def _die_with_the_worker():
    """Dies (SIGKILL) when the worker thread that started this interpreter
    ends, as a forked child would have been told to before exec; exits at
    once if that worker is already gone."""
    parent = os.environ.pop("QUARRY_PARENT_PID", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != int(parent):
        os._exit(1)


_die_with_the_worker()
_requests = os.fdopen(os.dup(0), "rb", buffering=0)
_replies = os.fdopen(os.dup(1), "wb", buffering=0)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
os.dup2(2, 1)

try:
    import cloudpickle
except ImportError:
    cloudpickle = None

_loaded = {}


def _read_exact(n):
    chunks = []
    while n:
        chunk = _requests.read(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame():
    (length,) = struct.unpack("<Q", _read_exact(8))
    return _read_exact(length)


def _write_frame(payload):
    _replies.write(struct.pack("<Q", len(payload)))
    _replies.write(payload)


def _load_ref(path):
    value = _loaded.pop(path, None)
    if value is None:
        with open(path, "rb") as f:
            value = pickle.load(f)
    _loaded[path] = value
    while len(_loaded) > MAX_LOADED:
        _loaded.pop(next(iter(_loaded)))
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, header):
        super().__init__(io.BytesIO(data))
        self._inputs = header["inputs"]
        self._broadcast = header["broadcast"]

    def persistent_load(self, pid):
        tag, which = pid
        if tag == "quarry-ref" and which < len(self._inputs):
            return _load_ref(self._inputs[which])
        if tag == "quarry-broadcast" and which in self._broadcast:
            return _load_ref(self._broadcast[which])
        raise pickle.UnpicklingError("the task has no input for reference %r" % (pid,))


def _error_text(exc):
    # The traceback starts in main() and _run(): show the task's frames only.
    tb = exc.__traceback__
    for _ in range(2):
        if tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        pickled = cloudpickle.dumps(exc)
        if len(pickled) <= MAX_EXCEPTION_BYTES:
            text += EXCEPTION_MARKER + base64.b64encode(pickled).decode("ascii")
    except Exception:
        pass
    return text


def _run(header, body):
    fn, args, kwargs = _Unpickler(body, header).load()
    if header.get("shard") is not None:
        args = (header["shard"],) + tuple(args)
    return cloudpickle.dumps(fn(*args, **kwargs))


def main():
    hello = {
        "protocol": PROTOCOL,
        "python": "%d.%d" % sys.version_info[:2],
        "cloudpickle": getattr(cloudpickle, "__version__", None),
    }
    _write_frame(json.dumps(hello).encode())
    while True:
        try:
            header = json.loads(_read_frame())
            body = _read_frame()
        except EOFError:
            return
        try:
            reply = b"\x00" + _run(header, body)
        except BaseException as exc:  # a task's SystemExit fails the task only
            reply = b"\x01" + _error_text(exc).encode("utf-8", "replace")
        del body
        sys.stdout.flush()
        sys.stderr.flush()
        _write_frame(reply)


main()
