"""`ChurnProbability`'s vectorised preprocessing equals the fitted sklearn pipeline it reads.

Timing lives in bench/; this checks only that the fast path computes the same numbers, takes
the rows it should, and hands everything else to the pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from churn import data, model, schema

SMALL = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "random_forest": {"n_estimators": 20, "max_depth": 6, "min_samples_leaf": 5},
    "hist_gradient_boosting": {"max_iter": 20, "learning_rate": 0.1, "max_leaf_nodes": 15},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return data.normalise(data.generate(rows=3000, seed=7))


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request: pytest.FixtureRequest, frame: pd.DataFrame) -> model.ChurnProbability:
    m = model.build(request.param, SMALL[request.param], seed=0)
    return m.fit(data.features(frame), data.labels(frame))


def random_rows(n: int, seed: int, unknown: float = 0.0) -> pd.DataFrame:
    """Random valid rows (any category, any number in range, missing TotalCharges), with a
    share `unknown` of categorical cells replaced by strings the encoder never saw."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for c in schema.FEATURES:
        if c.kind is schema.Kind.CATEGORY:
            values = rng.choice(np.array(c.categories, dtype=object), size=n)
            if unknown:
                swap = rng.random(n) < unknown
                values[swap] = rng.choice(np.array(["Maybe", "", "yes", "DSL "], dtype=object),
                                          size=int(swap.sum()))  # fmt: skip
            columns[c.name] = pd.Series(values, dtype=object)
        elif c.kind is schema.Kind.NUMBER:
            values = rng.uniform(0, 9000, size=n).round(2)
            if c.nullable:
                values[rng.random(n) < 0.1] = np.nan
            columns[c.name] = values
        else:
            lo, hi = int(c.minimum or 0), int(c.maximum or 1)
            columns[c.name] = rng.integers(lo, hi + 1, size=n, dtype=np.int64)
    return pd.DataFrame(columns)


def fast_matrix(m: model.ChurnProbability, X: pd.DataFrame) -> np.ndarray | None:
    return m._encoded(X)


@pytest.mark.parametrize("n", [1, 7, 5000])
@pytest.mark.parametrize("unknown", [0.0, 0.05])
def test_fast_path_equals_the_pipeline(
    fitted: model.ChurnProbability, n: int, unknown: float
) -> None:
    X = random_rows(n, seed=n, unknown=unknown)
    matrix = fast_matrix(fitted, X)
    assert matrix is not None, "these rows must take the fast path"
    preprocess = fitted.pipeline.steps[0][1]
    np.testing.assert_array_equal(matrix, preprocess.transform(X))
    want = fitted.pipeline.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(X), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fitted.predict(X), want[:, 1], rtol=0, atol=1e-12)


def test_training_rows_and_column_order_do_not_matter(
    fitted: model.ChurnProbability, frame: pd.DataFrame
) -> None:
    X = data.features(frame).iloc[::-1]
    X = X[list(reversed(X.columns))]  # the pipeline selects by name; so must the fast path
    assert fast_matrix(fitted, X) is not None
    np.testing.assert_allclose(
        fitted.predict(X), fitted.pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-12
    )


def test_none_total_charges_in_an_object_column(fitted: model.ChurnProbability) -> None:
    X = random_rows(50, seed=3)
    X["TotalCharges"] = pd.Series(
        [None if i % 3 == 0 else v for i, v in enumerate(X["TotalCharges"])], dtype=object
    )
    np.testing.assert_allclose(
        fitted.predict(X), fitted.pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize(
    "spoil",
    [
        lambda X: X.assign(Contract=pd.Series([None] * len(X), dtype=object)),
        lambda X: X.assign(gender=pd.Series([np.nan] * len(X), dtype=object)),
        lambda X: X.assign(Partner=pd.Series([1] * len(X), dtype=object)),
        lambda X: X.assign(tenure=pd.Series(["twelve"] * len(X), dtype=object)),
        lambda X: X.assign(MonthlyCharges=np.inf),
        lambda X: X.drop(columns=["tenure"]),
    ],
    ids=["none-category", "nan-category", "number-category", "text-number", "inf", "missing"],
)
def test_anything_odd_goes_to_the_pipeline(fitted: model.ChurnProbability, spoil: Any) -> None:
    X = spoil(random_rows(5, seed=11))
    assert fast_matrix(fitted, X) is None
    try:
        want: Any = fitted.pipeline.predict_proba(X)
    except Exception as exc:  # the pipeline's own error is what the caller gets
        with pytest.raises(type(exc)):
            fitted.predict_proba(X)
    else:
        np.testing.assert_allclose(fitted.predict_proba(X), want, rtol=0, atol=0)


def test_an_unexpected_pipeline_is_always_scored_by_itself(frame: pd.DataFrame) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = list(schema.NUMERIC_FEATURES)
    other = model.ChurnProbability(
        Pipeline(
            [
                ("preprocess", ColumnTransformer([("n", StandardScaler(), numeric)])),
                ("classifier", LogisticRegression()),
            ]
        )
    )
    X = data.features(frame).fillna(0.0)
    other.fit(X, data.labels(frame))
    assert fast_matrix(other, X) is None
    np.testing.assert_array_equal(other.predict(X), other.pipeline.predict_proba(X)[:, 1])


def test_the_cache_is_not_serialised_and_rebuilt_after_loading(
    fitted: model.ChurnProbability,
) -> None:
    X = random_rows(20, seed=5)
    fitted.predict(X)
    assert "_encoding" in fitted.__dict__
    blob = sio.dumps(fitted)
    kind = type(fitted.pipeline.steps[-1][1]).__name__
    model_type = {
        "LogisticRegression": "logistic_regression",
        "RandomForestClassifier": "random_forest",
        "HistGradientBoostingClassifier": "hist_gradient_boosting",
    }[kind]
    assert set(sio.get_untrusted_types(data=blob)) <= set(model.trusted_types(model_type))
    loaded = sio.loads(blob, trusted=model.trusted_types(model_type))
    assert "_encoding" not in loaded.__dict__
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert fast_matrix(loaded, X) is not None
