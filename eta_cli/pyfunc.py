"""MLflow pyfunc wrapper around :class:`~eta_cli.model.EtaModel`.

Kept apart from ``model.py`` because importing mlflow costs seconds, and the
service and batch scorer load :class:`EtaModel` directly.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc

from eta_cli.model import MODEL_DIR_ARTIFACT, EtaModel


class EtaPyfunc(mlflow.pyfunc.PythonModel):
    """``predict`` takes orders (a frame of the order columns) and returns the ETA columns."""

    def load_context(self, context: Any) -> None:
        self.model = EtaModel.load(context.artifacts[MODEL_DIR_ARTIFACT])

    # The signature comes from log_model (order columns in, ETA columns out). MLflow would
    # otherwise derive one from predict's type hints and warn on anything but list[...]:
    # so no hint on ``model_input``, and the class opts out of type-hint validation.
    _skip_type_hint_validation = True

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "created_at" in frame.columns:
            frame = frame.assign(created_at=pd.to_datetime(frame["created_at"]))
        return self.model.predict_frame(frame)
