"""``predict_files``: the batch entry point of the predict stage, for both engines.

``engine="local"`` scores one file in this process (:mod:`eta_cli.predict.batch`);
``engine="dask"`` scores every file under a folder or ``s3://`` prefix, one Dask task per
file (:mod:`eta_cli.predict.dask`), with the same per-file code. Kept apart from both so
neither engine module imports the other's dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eta_cli.predict import DEFAULT_CHUNK_ROWS, LocalPredictor, PredictError, Predictor
from eta_cli.predict.batch import BatchResult, output_format, score_file
from eta_cli.progress import ProgressCallback

if TYPE_CHECKING:
    from eta_cli.config import Settings
    from eta_cli.registry import LoadedModel


def predict_files(
    settings: Settings,
    input_uri: str,
    output_uri: str,
    *,
    model: str | LoadedModel | Predictor | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    engine: str = "local",
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Predictions for a file of orders (``engine="local"``), or for every file under a
    folder or ``s3://`` prefix, one Dask task per file (``engine="dask"``).

    ``model``: a model URI (default: the registry's champion), a loaded model, or a
    predictor (a :class:`~eta_cli.predict.RemotePredictor` posts the orders to a server).
    """
    from eta_cli.dask_engine import check_engine

    if chunk_rows < 1:
        raise PredictError("--chunk-rows must be at least 1")
    if check_engine(engine, scheduler) == "dask":
        from eta_cli.predict import dask as dask_predict

        return dask_predict.predict_on_cluster(
            settings,
            input_uri,
            output_uri,
            model=model,
            chunk_rows=chunk_rows,
            engine=engine,
            scheduler=scheduler,
            progress=progress,
        )
    output_format(output_uri)  # a bad output name fails before the model is loaded
    return score_file(
        settings,
        _predictor(settings, model),
        input_uri,
        output_uri,
        chunk_rows=chunk_rows,
        progress=progress,
    )


def _predictor(settings: Settings, model: str | LoadedModel | Predictor | None) -> Predictor:
    from eta_cli.predict import RemotePredictor

    if isinstance(model, LocalPredictor | RemotePredictor):
        return model
    if model is None or isinstance(model, str):
        return LocalPredictor.from_settings(settings, model)
    return LocalPredictor(model)
