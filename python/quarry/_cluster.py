"""``LocalCluster``: a scheduler and workers inside this process."""

import os
import shutil
import sys
import tempfile

from . import _native


class LocalCluster:
    """A scheduler and ``n_workers`` workers inside this process, like
    dask's ``LocalCluster``. Their Python tasks run on interpreters of
    ``python`` (default: this one), one per worker slot, kept warm."""

    def __init__(self, n_workers=None, threads_per_worker=1, python=None, work_dir=None):
        if n_workers is None:
            n_workers = os.cpu_count() or 1
        self._own_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="quarry-local-")
        self.staging = os.path.join(os.path.abspath(self.work_dir), "staging")
        os.makedirs(self.staging, exist_ok=True)
        self.n_workers = n_workers
        self._native = _native.NativeCluster(
            n_workers, threads_per_worker, python or sys.executable, self.work_dir
        )

    @property
    def scheduler_address(self):
        """The scheduler's address, for ``Client``."""
        return self._native.address

    def close(self):
        """Stops the workers and the scheduler."""
        if self._native is not None:
            self._native.close()
            self._native = None
            if self._own_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<quarry.LocalCluster: %d workers at %s>" % (
            self.n_workers,
            self._native.address if self._native else "closed",
        )
