"""EtaModel: ordered non-crossing quantiles, save/load round trip, every input path agrees."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eta_cli import features, schema, train
from eta_cli.config import Settings
from eta_cli.model import META_FILE, OUTPUT_COLUMNS, EtaModel
from eta_cli.synthetic import generate_orders


@pytest.fixture(scope="module")
def fitted() -> tuple[EtaModel, pd.DataFrame]:
    raw = generate_orders(3000, seed=5, messy=True)
    orders = train.prepare_orders(raw, Settings())
    split = train.time_split(orders, 0.15, 0.15)
    m = train.build_matrices(split, seed=0)
    settings = Settings()
    fit = train.fit_quantile_booster(
        m.x_train,
        m.y_train,
        m.x_val,
        m.y_val,
        train.model_quantiles(settings),
        max_rounds=60,
        nthread=1,
    )
    model = train.eta_model_from(fit, m.state, settings, m.x_val, m.y_val)
    return model, split.test


def test_quantiles_ordered_and_non_negative(fitted) -> None:
    model, test = fitted
    out = model.predict_frame(test)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    values = out.to_numpy()
    assert (values >= 0).all()
    assert (values[:, 0] <= values[:, 1]).all()  # p10 <= p50
    assert (values[:, 1] <= values[:, 3]).all()  # p50 <= quoted (q0.7)
    assert (values[:, 3] <= values[:, 2]).all()  # quoted <= p90
    assert out.index.equals(test.index)


def test_crossing_heads_are_sorted() -> None:
    """Even a booster whose heads cross returns ordered quantiles."""

    class Crossing:
        def inplace_predict(self, matrix):
            return np.tile([900.0, 500.0, 1200.0, 300.0], (matrix.shape[0], 1))

    state = features.FeatureState(0.0, np.array([], dtype=np.int64), np.array([]), np.array([]))
    model = EtaModel(Crossing(), state, (0.1, 0.5, 0.7, 0.9))
    row = model.predict_matrix(np.zeros((1, len(features.FEATURE_NAMES)), dtype=np.float32))[0]
    assert list(row) == [300.0, 500.0, 1200.0, 900.0]  # p10, p50, p90, quoted(0.7)


def test_save_load_round_trip_identical(fitted, tmp_path) -> None:
    model, test = fitted
    model.metadata["run_id"] = "abc"
    folder = model.save(tmp_path / "model_dir")
    loaded = EtaModel.load(folder)
    np.testing.assert_array_equal(
        loaded.predict_frame(test).to_numpy(), model.predict_frame(test).to_numpy()
    )
    assert loaded.quantiles == model.quantiles
    assert loaded.offsets == model.offsets
    assert loaded.metadata["run_id"] == "abc"


def test_calibration_offsets_widen_interval(fitted) -> None:
    model, _ = fitted
    assert len(model.offsets) == len(model.quantiles)
    median = model.quantiles.index(0.5)
    assert model.offsets[median] == 0.0
    assert any(v != 0.0 for v in model.offsets)


def test_records_path_matches_frame(fitted) -> None:
    model, test = fitted
    sample = test.head(25)
    records = []
    for row in sample[list(schema.INPUT_COLUMNS)].astype(object).to_dict("records"):
        record = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        record["created_at"] = np.datetime64(pd.Timestamp(row["created_at"]), "s")
        records.append(record)
    np.testing.assert_allclose(
        model.predict_records(records), model.predict_frame(sample).to_numpy(), rtol=1e-6
    )


def test_load_refuses_other_feature_set(fitted, tmp_path) -> None:
    model, _ = fitted
    folder = model.save(tmp_path / "old")
    meta = json.loads((folder / META_FILE).read_text())
    meta["feature_names"] = meta["feature_names"][:-1]
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="retrain"):
        EtaModel.load(folder)
