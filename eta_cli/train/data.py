"""Training data: load the orders, clean them, split them by time, fingerprint them.

Everything here works on a pandas frame and is engine-independent: the Dask engine
applies :func:`clean_orders` to each partition, so both engines train on the same
rows. :func:`build_matrices` turns a :class:`Split` into the feature matrices every
fit function of :mod:`eta_cli.train.fit` takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eta_cli import schema
from eta_cli.config import Settings
from eta_cli.errors import EtaError, first_line

if TYPE_CHECKING:
    import pandas as pd

    from eta_cli.features import FeatureState

MIN_TRAIN_ROWS = 200
MIN_EVAL_ROWS = 50


class TrainError(EtaError):
    """The data cannot be trained on (missing, empty, wrong columns, too few rows)."""


def _read_path(path: str, settings: Settings) -> pd.DataFrame:
    import pandas as pd

    from eta_cli import storage

    lower = path.lower()
    try:
        if storage.is_s3(path):
            filesystem, inner = storage.filesystem_and_path(path, settings)
            return pd.read_parquet(inner, filesystem=filesystem)
        local = Path(path).expanduser()
        if not local.exists():
            raise TrainError(f"--data {path}: no such file or folder")
        if local.is_dir() or lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(local)
        if lower.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(local, low_memory=False)
    except EtaError:
        raise
    except Exception as exc:
        raise TrainError(
            f"cannot read --data {path}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    raise TrainError(
        f"--data {path}: unknown format; allowed: a Parquet file or folder, a CSV file"
    )


def load_orders(
    settings: Settings, data: Any = None, since: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The orders to train on and a description of where they came from.

    ``data`` may be a DataFrame, a path (Parquet file/folder, CSV) or None for the
    ingested dataset (``eta_cli.lake.read_orders``).
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data, "dataframe"
    if data is not None:
        return _read_path(str(data), settings), str(data)
    from eta_cli.lake import read_orders

    # read_orders raises a clear EtaError when nothing was ingested yet.
    return read_orders(settings, since=since), f"{settings.effective_data_uri}/orders"


def prepare_orders(frame: pd.DataFrame, settings: Settings, source: str = "data") -> pd.DataFrame:
    """Check columns, coerce types, drop unusable rows, sort by order time.

    The ingested dataset is already clean; this is the guard for ``--data`` files.
    """
    if frame is None or len(frame) == 0:
        raise TrainError(f"no orders in {source}: the dataset is empty")
    check_columns(frame.columns, source)
    out = clean_orders(frame, settings, source)
    if out.empty:
        raise TrainError(
            f"no usable orders in {source}: every row lacks created_at/store_id or has "
            f"{schema.TARGET} outside {settings.min_duration_s}-{settings.max_duration_s} s"
        )
    out = out.sort_values([schema.CREATED_AT, schema.ORDER_ID], kind="stable")
    return out.reset_index(drop=True)


def check_columns(names: Iterable[str], source: str) -> None:
    """Refuse data without the order inputs and a target (or the delivery time to derive it)."""
    names = set(names)
    missing = [c for c in schema.INPUT_COLUMNS if c not in names]
    if schema.TARGET not in names and schema.DELIVERED_AT not in names:
        missing.append(f"{schema.TARGET} (or {schema.DELIVERED_AT})")
    if missing:
        raise TrainError(
            f"{source} lacks column(s) {', '.join(missing)}; expected the cleaned order "
            f"columns: {', '.join(schema.CLEAN_COLUMNS[:-1])}"
        )


def clean_orders(frame: pd.DataFrame, settings: Settings, source: str = "data") -> pd.DataFrame:
    """Coerce types, derive the target and drop unusable rows, without sorting.

    Works on any slice of the data (an empty one too), so the Dask engine applies
    it to each partition and both engines train on the same rows.
    """
    import pandas as pd

    out = frame.copy()
    for name in (schema.CREATED_AT, schema.DELIVERED_AT):
        if name in out.columns and not pd.api.types.is_datetime64_any_dtype(out[name]):
            try:
                out[name] = pd.to_datetime(out[name], errors="raise", format="mixed")
            except (ValueError, TypeError) as exc:
                raise TrainError(
                    f"{source}: column {name} is not a timestamp ({first_line(exc)})"
                ) from exc
        if name in out.columns and getattr(out[name].dt, "tz", None) is not None:
            out[name] = out[name].dt.tz_convert("UTC").dt.tz_localize(None)
    if schema.TARGET not in out.columns:
        out[schema.TARGET] = (out[schema.DELIVERED_AT] - out[schema.CREATED_AT]).dt.total_seconds()
    out[schema.TARGET] = pd.to_numeric(out[schema.TARGET], errors="coerce").astype("float64")
    for column in schema.COLUMNS:
        if column.kind in ("int", "float") and column.name in out.columns:
            values = out[column.name]
            if not pd.api.types.is_numeric_dtype(values):
                values = pd.to_numeric(values, errors="coerce")
            out[column.name] = values.astype("Float64")
        elif column.kind == "str" and column.name in out.columns:
            out[column.name] = out[column.name].astype("string")
    if schema.ORDER_ID not in out.columns:
        out[schema.ORDER_ID] = [f"row-{i}" for i in range(len(out))]
    out[schema.ORDER_ID] = out[schema.ORDER_ID].astype("string")
    usable = (
        out[schema.CREATED_AT].notna()
        & out[schema.TARGET].between(settings.min_duration_s, settings.max_duration_s)
        & out["store_id"].notna()
    )
    return out.loc[usable]


def fingerprint(frame: pd.DataFrame) -> str:
    """A short, order-independent-of-index hash of the training data (to compare runs)."""
    import pandas as pd

    columns = [c for c in schema.CLEAN_COLUMNS if c in frame.columns and c != schema.ORDER_DATE]
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass
class Split:
    """Time-ordered train / validation / test frames; test holds the most recent orders."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def boundaries(self) -> dict[str, str]:
        """First and last order time of each split (the run's eta.*_start / eta.*_end tags)."""

        def ts(frame: pd.DataFrame, fn: str) -> str:
            return str(getattr(frame[schema.CREATED_AT], fn)())

        return {
            "train_start": ts(self.train, "min"),
            "train_end": ts(self.train, "max"),
            "val_start": ts(self.val, "min"),
            "val_end": ts(self.val, "max"),
            "test_start": ts(self.test, "min"),
            "test_end": ts(self.test, "max"),
        }

    def rows(self) -> dict[str, int]:
        """Orders per split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def time_split(frame: pd.DataFrame, validation_fraction: float, test_fraction: float) -> Split:
    """Split a time-sorted frame by position: oldest = train, then validation, newest = test."""
    n = len(frame)
    n_test = round(n * test_fraction)
    n_val = round(n * validation_fraction)
    n_train = n - n_val - n_test
    if n_train < MIN_TRAIN_ROWS or n_val < MIN_EVAL_ROWS or n_test < MIN_EVAL_ROWS:
        raise TrainError(
            f"too few orders for a time split: {n} usable orders give train/validation/test "
            f"= {n_train}/{n_val}/{n_test}; need at least {MIN_TRAIN_ROWS} for training and "
            f"{MIN_EVAL_ROWS} each for validation and test"
        )
    return Split(
        train=frame.iloc[:n_train],
        val=frame.iloc[n_train : n_train + n_val],
        test=frame.iloc[n_train + n_val :],
    )


@dataclass
class Matrices:
    """Feature matrices of a split; what every fit function takes (engine-independent)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    state: FeatureState
    # Raw upstream estimates, for the naive baseline (not model features).
    upstream_train: np.ndarray
    upstream_test: np.ndarray


def upstream_sum(frame: pd.DataFrame) -> np.ndarray:
    """The two upstream duration estimates added up (NaN where one is missing): a baseline."""
    from eta_cli.features import as_float

    place = as_float(frame["estimated_order_place_duration"])
    drive = as_float(frame["estimated_store_to_consumer_driving_duration"])
    return place + drive


def build_matrices(split: Split, seed: int = 0) -> Matrices:
    """Features with the shared builder: out-of-fold history for train, full state for the rest."""
    from eta_cli import features

    y_train = split.train[schema.TARGET].to_numpy(dtype=np.float64)
    x_train, state = features.build_training_features(
        features.columns_from_frame(split.train), y_train, seed=seed
    )
    x_val = features.build_features(features.columns_from_frame(split.val), state)
    x_test = features.build_features(features.columns_from_frame(split.test), state)
    return Matrices(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=split.val[schema.TARGET].to_numpy(dtype=np.float64),
        x_test=x_test,
        y_test=split.test[schema.TARGET].to_numpy(dtype=np.float64),
        state=state,
        upstream_train=upstream_sum(split.train),
        upstream_test=upstream_sum(split.test),
    )
