"""The estimator: a scikit-learn Pipeline wrapped so that `predict` returns P(churn).

Serving and batch scoring go through `mlflow.pyfunc`, whose contract is `predict(DataFrame)`.
Wrapping the pipeline makes that call return the churn probability directly (the number the
API reports and the threshold is applied to) instead of a hard 0/1 label; `predict_proba` is kept
for sklearn-flavour consumers. The wrapper is serialised with skops, not pickle.

Scoring reads the fitted preprocessing as plain arrays (`_Encoding`, derived on first use and
never serialised) and hands the classifier the same matrix the ColumnTransformer would build:
a one-row predict drops from ~7 ms to ~0.3 ms, the pipeline's own preprocessing being almost
all of it. Rows it is not sure of (a None category, a text number...) go through the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churn import model_types, schema

if TYPE_CHECKING:
    from mlflow.models import ModelSignature


class _Vocabulary(dict[Any, int]):
    """Category -> its index; anything else -> -1."""

    def __missing__(self, key: Any) -> int:
        return -1


class _Encoding:
    """The fitted preprocessing of `build`'s pipeline, as plain arrays: the same matrix the
    ColumnTransformer produces, without its per-call overhead (column selection, validation,
    sparse stacking: ~7 ms of a ~7.1 ms one-row predict, the classifier being ~0.1 ms).

    Exact by construction: the same values are computed by the same float64 operations
    (impute NaN with `statistics_`, then `(x - mean_) / scale_`; one-hot columns in
    `categories_` order, an unknown string category being an all-zero block, as
    `handle_unknown="ignore"` does). Anything it is not sure of goes to the pipeline instead.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        encoder, cat_cols, numeric, num_cols, classifier = self._parts(pipeline)
        imputer, scaler = numeric.steps[0][1], numeric.steps[1][1]
        statistics = self._statistics(imputer, scaler)
        self.categorical = [str(c) for c in cat_cols]
        self.numeric = [str(c) for c in num_cols]
        self.columns = pd.Index([*self.categorical, *self.numeric])
        self.vocabulary, self.table, offset = self._category_table(encoder, len(self.categorical))
        self.n_onehot = offset
        self.statistics = statistics
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        self.width = offset + len(self.numeric)
        self.classifier = classifier

    @staticmethod
    def _parts(pipeline: Pipeline) -> tuple[OneHotEncoder, Any, Pipeline, Any, Any]:
        """(encoder, its columns, numeric pipeline, its columns, classifier) of `build`'s
        pipeline; TypeError for any other shape or setting."""
        preprocess, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
        if len(pipeline.steps) != 2 or not isinstance(preprocess, ColumnTransformer):
            raise TypeError("not build()'s pipeline")
        if preprocess.remainder != "drop" or preprocess.sparse_threshold != 0.0:
            raise TypeError("unexpected ColumnTransformer settings")
        fitted = [(n, t, c) for n, t, c in preprocess.transformers_ if n != "remainder"]
        if [n for n, _, _ in fitted] != ["categorical", "numeric"]:
            raise TypeError("unexpected transformers")
        (_, encoder, cat_cols), (_, numeric, num_cols) = fitted
        if not (
            isinstance(encoder, OneHotEncoder)
            and encoder.handle_unknown == "ignore"
            and encoder.drop_idx_ is None
            and not getattr(encoder, "_infrequent_enabled", False)
            and isinstance(numeric, Pipeline)
            and [type(s) for _, s in numeric.steps] == [SimpleImputer, StandardScaler]
        ):
            raise TypeError("unexpected encoder or numeric steps")
        return encoder, cat_cols, numeric, num_cols, classifier

    @staticmethod
    def _statistics(imputer: SimpleImputer, scaler: StandardScaler) -> np.ndarray:
        """The imputer's fill values; TypeError for settings the fast path does not mirror."""
        statistics = np.asarray(imputer.statistics_, dtype=np.float64)
        if (
            imputer.add_indicator
            or not (imputer.missing_values is np.nan or np.isnan(imputer.missing_values))
            or np.isnan(statistics).any()  # an all-missing column is dropped: not handled here
            or not (scaler.with_mean and scaler.with_std)
        ):
            raise TypeError("unexpected imputer or scaler")
        return statistics

    @staticmethod
    def _category_table(
        encoder: OneHotEncoder, n_columns: int
    ) -> tuple[_Vocabulary, np.ndarray, int]:
        """Every category of every column in one hash index (one lookup per call for all the
        categorical cells), `table[j, k]`: the output column of category k of column j (-1 when
        column j has no such category: an unknown value, an all-zero block), and the number of
        one-hot columns."""
        categories: list[str] = []
        for cats in encoder.categories_:
            if cats.dtype != object or not all(type(c) is str for c in cats):
                raise TypeError("non-string categories")
            categories.extend(c for c in cats if c not in categories)
        vocabulary = _Vocabulary((c, i) for i, c in enumerate(categories))
        table = np.full((n_columns, len(categories) + 1), -1, dtype=np.intp)
        offset = 0
        for j, cats in enumerate(encoder.categories_):
            table[j, [vocabulary[c] for c in cats]] = offset + np.arange(len(cats))
            offset += len(cats)
        return vocabulary, table, offset

    def matrix(self, X: pd.DataFrame) -> np.ndarray | None:
        """The pipeline's preprocessed matrix of `X`, or None when the pipeline must decide."""
        if not X.columns.is_unique:
            return None
        where = X.columns.get_indexer(self.columns)
        if (where < 0).any():
            return None  # a missing column: the pipeline's error message
        # One conversion of the whole frame (cheap: mlflow hands over a frame of few blocks);
        # per-column Series access costs ~20 µs a column, more than the rest together.
        cells = X.to_numpy(dtype=object)
        n, k = len(X), len(self.categorical)
        labels = cells[:, where[:k]]
        try:
            # A dict lookup per cell, looped in C (~40 ns a cell; pandas' get_indexer on object
            # arrays costs several times that).
            found = np.fromiter(
                map(self.vocabulary.__getitem__, labels.ravel()), dtype=np.intp, count=n * k
            ).reshape(n, k)
        except TypeError:
            return None  # an unhashable value
        if (found < 0).any():
            odd = labels[found < 0]
            if not all(isinstance(v, str) for v in odd):
                return None  # None, NaN, a number: what sklearn does with it is its own business
        cols = self.table[np.arange(k), found]  # found == -1 -> the table's last column: -1
        out = np.zeros((n, self.width), dtype=np.float64)
        hit = cols >= 0
        out[np.nonzero(hit)[0], cols[hit]] = 1.0
        try:
            numbers = cells[:, where[k:]].astype(np.float64)
        except (TypeError, ValueError):
            return None
        if np.isinf(numbers).any():
            return None  # sklearn refuses infinity: let it say so
        missing = np.isnan(numbers)
        if missing.any():
            numbers = np.where(missing, self.statistics, numbers)
        numbers -= self.mean
        numbers /= self.scale
        out[:, self.n_onehot :] = numbers
        return out


class ChurnProbability(BaseEstimator):
    """`predict(X)` -> P(churn) per row, shape (n,)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ChurnProbability:
        self.__dict__.pop("_encoding", None)
        self.pipeline.fit(X, y)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # The encoding is derived from the fitted pipeline: never serialised (skops would have
        # to trust its type), rebuilt on first use after loading, so models registered before
        # it existed get it too.
        state = dict(super().__getstate__())
        state.pop("_encoding", None)
        return state

    def _encoded(self, X: Any) -> np.ndarray | None:
        if not isinstance(X, pd.DataFrame):
            return None
        encoding = self.__dict__.get("_encoding")
        if encoding is None:
            try:
                encoding = _Encoding(self.pipeline)
            except (TypeError, ValueError, AttributeError, IndexError):
                encoding = False  # not build()'s structure: the pipeline, always
            self.__dict__["_encoding"] = encoding
        if not isinstance(encoding, _Encoding):
            return None
        return encoding.matrix(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.predict_proba(X)[:, 1], dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        matrix = self._encoded(X)
        if matrix is None:
            return np.asarray(self.pipeline.predict_proba(X))
        return np.asarray(self.__dict__["_encoding"].classifier.predict_proba(matrix))


# skops refuses to load any type not listed. Every model stores our wrapper and numpy dtypes
# beyond skops' defaults; each model type adds its own (churn/model_types.py).
_BASE_TRUSTED = (f"{ChurnProbability.__module__}.{ChurnProbability.__qualname__}", "numpy.dtype")


def trusted_types(model_type: str) -> list[str]:
    """The types skops may load from a fitted model of `model_type`."""
    return [*_BASE_TRUSTED, *model_types.get(model_type).trusted]


def all_trusted_types() -> frozenset[str]:
    """Every type any registered model type may ask skops to trust."""
    return frozenset(t for name in model_types.MODEL_TYPES for t in trusted_types(name))


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


_SET_BY_TRAINING = ("random_state", "n_jobs")


def hyperparameter_errors(model_type: str, params: dict[str, Any]) -> list[str]:
    """What is wrong with `params` for `model_type`, one message per key naming it, checked with
    scikit-learn's own parameter constraints (the rules `fit` would apply, minutes later)."""
    from sklearn.utils._param_validation import InvalidParameterError

    estimator = model_types.get(model_type).estimator_class()
    known = estimator().get_params()
    errors = []
    for key, value in params.items():
        where = f"model.{model_type}.{key}"
        if key in _SET_BY_TRAINING:
            errors.append(f"{where}: set by training (random_state from `seed`); remove it")
        elif key not in known:
            errors.append(
                f"{where}: not a parameter of {estimator.__name__}; "
                f"one of {', '.join(k for k in sorted(known) if k not in _SET_BY_TRAINING)}"
            )
        else:
            try:
                estimator(**{key: value})._validate_params()
            except InvalidParameterError as exc:
                # "The 'C' parameter of LogisticRegression must be ... Got -1 instead."
                rule = str(exc).split(" parameter of ", 1)[-1].split(" ", 1)[-1]
                rule, _, got = rule.partition(". Got ")
                errors.append(f"{where}: {rule}; got {got.removesuffix(' instead.')}")
    return errors


def _classifier(model_type: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    kind = model_types.get(model_type)
    estimator = kind.estimator_class()
    seeded = {"random_state": seed} if "random_state" in estimator().get_params() else {}
    classifier: BaseEstimator = estimator(**seeded, **kind.fixed, **params)
    return classifier


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
