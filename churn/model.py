"""The estimator: a scikit-learn Pipeline wrapped so that `predict` returns P(churn).

Serving and batch scoring go through `mlflow.pyfunc`, whose contract is `predict(DataFrame)`.
Wrapping the pipeline makes that call return the churn probability directly (the number the
API reports and the threshold is applied to) instead of a hard 0/1 label; `predict_proba` is kept
for sklearn-flavour consumers. The wrapper is serialised with skops, not pickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churn import schema

if TYPE_CHECKING:
    from mlflow.models import ModelSignature


class ChurnProbability(BaseEstimator):
    """`predict(X)` -> P(churn) per row, shape (n,)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ChurnProbability:
        self.pipeline.fit(X, y)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(X)[:, 1], dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(X))


# skops refuses to load any type not listed. These are the types our own estimators store beyond
# skops' defaults, reviewed one by one: our wrapper, numpy dtypes, and the tree node storage of
# the tree ensembles (which skops flags because a crafted file could index out of bounds; these
# files are written by our own training run, and loading is restricted to exactly these types).
_BASE_TRUSTED = [f"{ChurnProbability.__module__}.{ChurnProbability.__qualname__}", "numpy.dtype"]
TRUSTED_TYPES: dict[str, list[str]] = {
    "logistic_regression": _BASE_TRUSTED,
    "random_forest": [*_BASE_TRUSTED, "sklearn.tree._tree.Tree"],
    "hist_gradient_boosting": [
        *_BASE_TRUSTED,
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ],
}


_MLFLOW_TYPES = {
    schema.Kind.CATEGORY: "string",
    schema.Kind.FLAG: "long",
    schema.Kind.INTEGER: "long",
    schema.Kind.NUMBER: "double",
}


def signature() -> ModelSignature:
    """The model's MLflow signature, derived from the schema (not inferred from a sample)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec(_MLFLOW_TYPES[c.kind], c.name) for c in schema.FEATURES])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double")]))


def _classifier(model_type: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    if model_type == "logistic_regression":
        return LogisticRegression(random_state=seed, **params)
    if model_type == "random_forest":
        return RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    if model_type == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed, **params)
    raise ValueError(f"unknown model type {model_type!r}")


def build(model_type: str, params: dict[str, Any], seed: int) -> ChurnProbability:
    categories = [list(schema.BY_NAME[name].categories) for name in schema.CATEGORICAL_FEATURES]
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(categories=categories, handle_unknown="ignore"),
                list(schema.CATEGORICAL_FEATURES),
            ),
            (
                "numeric",
                Pipeline(
                    [
                        # TotalCharges is missing for brand-new customers (tenure 0).
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                    ]
                ),
                list(schema.NUMERIC_FEATURES),
            ),
        ],
        sparse_threshold=0.0,
    )
    return ChurnProbability(
        Pipeline(
            [("preprocess", preprocess), ("classifier", _classifier(model_type, params, seed))]
        )
    )
