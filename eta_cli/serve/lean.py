"""A leaner call into XGBoost for small requests, used only where it is bit-identical.

For one order, the Python around ``Booster.inplace_predict`` costs as much as the
prediction itself and holds the GIL; :class:`LeanBooster` makes the same C call
without it, and :func:`accelerate` swaps it in after checking on real inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eta_cli.booster import predict_dense
from eta_cli.errors import first_line
from eta_cli.serve.events import log_event

if TYPE_CHECKING:
    from eta_cli.registry import LoadedModel


class LeanBooster:
    """XGBoost's own in-place prediction C call, without the Python wrapper's per-call work.

    ``Booster.inplace_predict`` spends ~150 µs in Python per call (it builds a
    class, re-derives ctypes types, copies twice) around a C call that takes about
    as long for one order; that Python time holds the GIL and caps throughput. This
    makes the same call through :func:`eta_cli.booster.predict_dense`, the one
    implementation that ``eta predict``'s :class:`~eta_cli.booster.NativeBooster`
    uses too, on the loaded booster's handle and library; :func:`accelerate` checks
    that the results are bit-identical on real inputs before using it.
    """

    def __init__(self, booster: Any) -> None:
        from xgboost.core import _LIB

        self.booster = booster  # keeps the handle alive
        self._lib = _LIB  # the library that created the handle
        self._handle = booster.handle

    def inplace_predict(self, data: Any) -> Any:
        """What ``Booster.inplace_predict(data)`` returns, from the same C call."""
        return predict_dense(self._lib, self._handle, data)


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
        # float64 as the feature builder hands it over, and float32.
        for rows in (probe[:1], probe, probe.astype(np.float32)):
            if not np.array_equal(lean.inplace_predict(rows), model.booster.inplace_predict(rows)):
                raise ValueError("lean prediction differs from Booster.inplace_predict")
        fast = dataclasses.replace(model, booster=lean)
    except Exception as exc:  # an XGBoost we do not know: use its public API
        log_event("lean_predict_unavailable", error=first_line(exc))
        return loaded
    return dataclasses.replace(loaded, model=fast)
