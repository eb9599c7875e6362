"""Load mmengine checkpoints under torch's `weights_only=True` default, narrowly.

mmengine pickles a few of its own and numpy's objects into every checkpoint it writes
(message-hub history buffers, numpy scalars/arrays in `meta`). torch >= 2.6 refuses them by
default, which breaks `resume`. We allow exactly those globals instead of turning the safety
off for every file a user points at.

One of them cannot be allowed safely: `HistoryBuffer.__getstate__` stores its statistics
*functions*, which pickle as `builtins.getattr(HistoryBuffer, 'min')`, and allowing `getattr`
would let a crafted file reach any attribute of the allowed classes. So checkpoints written by
raytune_ft's processes leave out the four default statistics (mmengine re-creates them in
`__setstate__` anyway); custom ones registered by a user are still stored.

mmengine >= 0.10.8 loads inside `torch.serialization.safe_globals(...)`, whose exit *removes*
the globals it listed, ours among them (numpy's). So the allow-list is added again on every call,
right before each of our own `weights_only` loads; only the `__getstate__` patch is once.
"""

from __future__ import annotations

import functools

_DEFAULT_STATISTICS = ("min", "max", "current", "mean")


def mmengine_checkpoint_globals() -> list:
    """The non-tensor globals mmengine writes into a checkpoint (found with
    `torch.serialization.get_unsafe_globals_in_checkpoint` on a real resume checkpoint)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    try:  # numpy >= 2 moved the pickling helpers
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def _history_buffer_getstate(self) -> dict:
    state = dict(self.__dict__)
    state.pop("_statistics_methods", None)  # a class attribute; never instance state
    state["statistics_methods"] = {k: v for k, v in self._statistics_methods.items()
                                   if k not in _DEFAULT_STATISTICS}
    return state


@functools.cache
def _write_checkpoints_without_getattr() -> None:
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__getstate__ = _history_buffer_getstate


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint globals for `torch.load(weights_only=True)` (again:
    mmengine's own loads remove them) and make this process write checkpoints that need
    nothing more."""
    import torch

    _write_checkpoints_without_getattr()
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
