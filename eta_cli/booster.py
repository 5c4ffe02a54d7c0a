"""A trained XGBoost booster used through XGBoost's C library, without ``import xgboost``.

Importing the ``xgboost`` package costs seconds (it imports scikit-learn, SciPy and
pandas when they are installed), which is most of a one-off ``eta predict``.
:class:`NativeBooster` loads the very same shared library the package ships and makes
the same C calls the package makes for ``Booster.load_model``, ``set_param`` and
``inplace_predict`` on a NumPy array, so the predictions are the package's, bit for
bit (tests compare them). Anything unexpected (no library, a C error) raises
:class:`NativeUnavailable`, and callers fall back to the ``xgboost`` package.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path
from typing import Any

_LIB: ctypes.CDLL | None = None


class NativeUnavailable(RuntimeError):
    """XGBoost's C library cannot be used directly here; use the ``xgboost`` package."""


def _library_name() -> str:
    if sys.platform == "darwin":
        return "libxgboost.dylib"
    if sys.platform == "win32":
        return "xgboost.dll"
    return "libxgboost.so"


def _library() -> ctypes.CDLL:
    """The shared library of the installed ``xgboost`` package, found without importing it."""
    global _LIB
    if _LIB is not None:
        return _LIB
    import importlib.util

    spec = importlib.util.find_spec("xgboost")  # locates the package; does not import it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "lib" / _library_name()
        if path.is_file():
            try:
                lib = ctypes.cdll.LoadLibrary(str(path))
            except OSError as exc:
                raise NativeUnavailable(f"cannot load {path}: {exc}") from exc
            lib.XGBGetLastError.restype = ctypes.c_char_p
            _LIB = lib
            return lib
    raise NativeUnavailable("the xgboost package's shared library was not found")


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != 0:
        raise NativeUnavailable(lib.XGBGetLastError().decode(errors="replace"))


# Prediction arguments of ``Booster.inplace_predict(data)`` with its defaults (NaN is missing).
PREDICT_ARGS = (
    b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, '
    b'"missing": NaN, "strict_shape": false, "cache_id": 0}'
)


def predict_dense(lib: ctypes.CDLL, handle: ctypes.c_void_p, data: Any) -> Any:
    """What ``xgboost.Booster.inplace_predict(data)`` returns for a 2-D NumPy array.

    The one implementation of the call, shared by :class:`NativeBooster` (no ``import
    xgboost``) and the service's :class:`eta_cli.serve.lean.LeanBooster` (a loaded
    ``xgboost.Booster`` without the wrapper's per-call Python): the same C function
    (``XGBoosterPredictFromDense``), the same arguments and the package's dtype rules
    (``_ensure_np_dtype``), so the predictions are the package's, bit for bit. ``lib``
    is the library that created ``handle``. A C error raises :class:`NativeUnavailable`.
    """
    import numpy as np

    data = np.asarray(data)
    if data.dtype.hasobject or data.dtype in (np.float16, np.bool_):
        data = data.astype(np.float32, copy=False)
    if not data.flags.aligned:
        data = np.require(data, requirements="A")
    interface = json.dumps(data.__array_interface__).encode()
    shape = ctypes.POINTER(ctypes.c_uint64)()
    dims = ctypes.c_uint64()
    preds = ctypes.POINTER(ctypes.c_float)()
    _check(
        lib,
        lib.XGBoosterPredictFromDense(
            handle,
            interface,
            PREDICT_ARGS,
            ctypes.c_void_p(),
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(preds),
        ),
    )
    out_shape = tuple(int(shape[i]) for i in range(dims.value))
    size = 1
    for extent in out_shape:
        size *= extent
    if size == 0:
        return np.empty(out_shape, dtype=np.float32)
    # The buffer belongs to the booster's per-thread slot: copy it now.
    return np.ctypeslib.as_array(preds, shape=(size,)).copy().reshape(out_shape)


class NativeBooster:
    """The part of ``xgboost.Booster`` that scoring uses: ``inplace_predict`` and
    ``num_features``, on a model file loaded through the C API.

    Pickles as the model's bytes (a Dask worker reloads it), like ``xgboost.Booster``.
    """

    def __init__(self, raw: bytes, params: dict[str, str] | None = None) -> None:
        lib = _library()
        self._lib = lib
        self._raw = bytes(raw)
        self._params = dict(params or {})
        self.handle = ctypes.c_void_p()
        _check(lib, lib.XGBoosterCreate(None, ctypes.c_uint64(0), ctypes.byref(self.handle)))
        buffer = ctypes.create_string_buffer(self._raw, len(self._raw))
        _check(
            lib,
            lib.XGBoosterLoadModelFromBuffer(self.handle, buffer, ctypes.c_uint64(len(self._raw))),
        )
        # What xgboost.Booster() sets on every booster it creates, then the caller's params.
        for key, value in {"validate_parameters": "1", **self._params}.items():
            _check(lib, lib.XGBoosterSetParam(self.handle, key.encode(), str(value).encode()))

    @classmethod
    def load(cls, path: str | Path, params: dict[str, str] | None = None) -> NativeBooster:
        """A booster from a file written by ``Booster.save_model`` (any format it reads)."""
        return cls(Path(path).read_bytes(), params)

    def num_features(self) -> int:
        """Number of features the booster was trained on."""
        out = ctypes.c_uint64()
        _check(self._lib, self._lib.XGBoosterGetNumFeature(self.handle, ctypes.byref(out)))
        return int(out.value)

    def inplace_predict(self, data: Any) -> Any:
        """``xgboost.Booster.inplace_predict(data)`` for a 2-D array (:func:`predict_dense`)."""
        return predict_dense(self._lib, self.handle, data)

    def __getstate__(self) -> dict[str, Any]:
        return {"raw": self._raw, "params": self._params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["raw"], state["params"])  # type: ignore[misc]

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self._lib.XGBoosterFree(handle)
            self.handle = None
