"""How calls, arguments and results are pickled: cloudpickle, by value for
functions the workers cannot import, with objects put into the store
travelling as references."""

import io
import pickle
import sys
import sysconfig

import cloudpickle

from ._native import __version__

# What every call carries so that a worker refuses a mismatch clearly.
VERSIONS = (
    "%d.%d" % sys.version_info[:2],
    cloudpickle.__version__,
    __version__,
)

# Arguments whose pickle is larger than this are put into the store and
# passed by reference (the scheduler's inline cap is 64 KiB).
AUTO_PUT_BYTES = 32 * 1024

# Arguments of these types are never large enough to be put.
_SMALL_TYPES = (int, float, complex, bool, type(None))

_INSTALLED = tuple(
    {
        path
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        for path in [sysconfig.get_paths().get(key)]
        if path
    }
)


class Ref:
    """An object put into the store (``Client.put``). Pass it to tasks as
    an argument (or inside one): each worker downloads it once into its
    cache, and each interpreter loads it once and keeps it for the tasks
    after."""

    __slots__ = ("_encoded", "url", "size")

    def __init__(self, encoded, url, size):
        self._encoded = encoded
        self.url = url
        self.size = size

    def __repr__(self):
        return "<quarry.Ref %s (%d bytes)>" % (self.url, self.size)

    def __reduce__(self):
        raise TypeError(
            "a quarry.Ref can only be pickled as a task's argument "
            "(Client.submit, Client.map)"
        )


class _CallPickler(cloudpickle.Pickler):
    """Pickles a call, replacing each ``Ref`` by a persistent id the worker
    resolves to the staged object."""

    def __init__(self, file, broadcast):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs = []
        self._broadcast = broadcast
        self._indexes = {}

    def persistent_id(self, obj):
        if type(obj) is not Ref:
            return None
        index = self._indexes.get(obj.url)
        if index is None:
            index = len(self.refs)
            self._indexes[obj.url] = index
            self.refs.append(obj)
        if self._broadcast:
            return ("quarry-broadcast", "ref-%d" % index)
        return ("quarry-ref", index)


def _by_value(fn):
    """Pickles the module of ``fn`` by value when the workers probably
    cannot import it: a script's or a test's own module, as opposed to an
    installed package (``__main__`` is always pickled by value)."""
    name = getattr(fn, "__module__", None)
    if not name or name == "__main__" or name.split(".")[0] == "quarry":
        return
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None or path.startswith(_INSTALLED):
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        pass


def dumps_call(fn, args, kwargs, broadcast=False):
    """The pickle of ``(fn, args, kwargs)`` and the references it holds."""
    _by_value(fn)
    buffer = io.BytesIO()
    pickler = _CallPickler(buffer, broadcast)
    pickler.dump((fn, tuple(args), dict(kwargs)))
    return buffer.getvalue(), pickler.refs


def is_small(value):
    """Whether ``value`` is certainly small enough to travel inline."""
    if isinstance(value, _SMALL_TYPES) or type(value) is Ref:
        return True
    if isinstance(value, (str, bytes)):
        return len(value) < AUTO_PUT_BYTES // 4
    return False


def dumps_value(value):
    """The pickle of a value to put into the store."""
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


loads = pickle.loads
