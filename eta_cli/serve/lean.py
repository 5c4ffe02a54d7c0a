"""A leaner call into XGBoost for small requests, used only where it is bit-identical.

For one order, the Python around ``Booster.inplace_predict`` costs as much as the
prediction itself and holds the GIL; :class:`LeanBooster` makes the same C call
without it, and :func:`accelerate` swaps it in after checking on real inputs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eta_cli.errors import first_line
from eta_cli.serve.events import log_event

if TYPE_CHECKING:
    from eta_cli.registry import LoadedModel


class LeanBooster:
    """XGBoost's own in-place prediction C call, without the Python wrapper's per-call work.

    ``Booster.inplace_predict`` spends ~150 µs in Python per call (it builds a
    class, re-derives ctypes types, copies twice) around a C call that takes about
    as long for one order; that Python time holds the GIL and caps throughput. This
    calls the same C function (``XGBoosterPredictFromDense``) with the same
    arguments, so results are bit-identical; :func:`accelerate` checks that on real
    inputs before using it, and falls back to the booster itself otherwise.
    """

    def __init__(self, booster: Any) -> None:
        import ctypes

        from xgboost.core import _LIB, c_bst_ulong, make_jcargs

        self.booster = booster  # keeps the handle alive
        self._ctypes = ctypes
        self._ulong = c_bst_ulong
        self._lib = _LIB
        self._handle = booster.handle
        self._args = make_jcargs(
            type=0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=float("nan"),
            strict_shape=False,
            cache_id=0,
        )
        self._no_proxy = ctypes.c_void_p()

    def inplace_predict(self, data: Any) -> Any:
        """What ``Booster.inplace_predict(data)`` returns, from the same C call."""
        import numpy as np

        ctypes = self._ctypes
        data = np.ascontiguousarray(data, dtype=np.float32)
        interface = json.dumps(data.__array_interface__).encode()
        shape = ctypes.POINTER(self._ulong)()
        dims = self._ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        status = self._lib.XGBoosterPredictFromDense(
            self._handle,
            interface,
            self._args,
            self._no_proxy,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(preds),
        )
        if status != 0:
            raise RuntimeError(self._lib.XGBGetLastError().decode())
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        size = 1
        for extent in out_shape:
            size *= extent
        # The buffer belongs to this thread's slot in the booster: copy it now.
        return np.ctypeslib.as_array(preds, shape=(size,)).copy().reshape(out_shape)


def accelerate(loaded: LoadedModel) -> LoadedModel:
    """A copy of ``loaded`` whose model predicts through :class:`LeanBooster`, if identical."""
    import dataclasses

    import numpy as np

    from eta_cli.model import EtaModel

    model = loaded.model
    if not isinstance(model, EtaModel) or isinstance(model.booster, LeanBooster):
        return loaded
    try:
        lean = LeanBooster(model.booster)
        n_features = int(model.booster.num_features())
        probe = np.random.default_rng(0).normal(500.0, 400.0, size=(64, n_features))
        probe[::5, ::3] = np.nan
        probe = probe.astype(np.float32)
        for rows in (probe[:1], probe):
            if not np.array_equal(lean.inplace_predict(rows), model.booster.inplace_predict(rows)):
                raise ValueError("lean prediction differs from Booster.inplace_predict")
        fast = dataclasses.replace(model, booster=lean)
    except Exception as exc:  # an XGBoost we do not know: use its public API
        log_event("lean_predict_unavailable", error=first_line(exc))
        return loaded
    return dataclasses.replace(loaded, model=fast)
