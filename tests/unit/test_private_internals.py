"""The private pandas, MLflow and scikit-learn internals churn/ and serve/ rely on, pinned.

Each is a fast path or a check that works around a cost of the public API, and most fall back
without a word when the internal is gone (serve/rows.py catches AttributeError, serve/holder.py
any exception): after an upgrade that moves one, the service still answers, only slower, or a
guard passes that should refuse. This file is what says so, naming what breaks and where:

    pytest tests/unit/test_private_internals.py

`test_every_private_use_is_listed` keeps the list whole: a private name (`x._y`, a module path
with a `._` segment, `getattr(x, "_y")`) used in churn/ or serve/ that the project does not
define itself must have an entry here, and an entry nobody uses any more must go. numpy, pyarrow
and skops are used through their public API only (skops' trust list names private sklearn
classes: those are entries too).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churn import model_types
from tests.conftest import ROOT


@dataclass(frozen=True)
class Internal:
    what: str  # the library's private name
    where: str  # the file and function relying on it
    breaks: str  # what an upgrade that moves it does to us
    names: frozenset[str]  # what the scan below finds in the source for it
    check: Callable[[], None]  # raises when the internal moved or changed shape


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _pandas_from_arrays() -> None:
    from_arrays = pd.DataFrame._from_arrays  # type: ignore[attr-defined]
    assert {"arrays", "columns", "index", "verify_integrity"} <= set(_params(from_arrays))
    frame = from_arrays(
        [np.array(["DSL"], dtype=object), np.array([1], dtype=np.int64)],
        columns=pd.Index(["InternetService", "tenure"]), index=pd.RangeIndex(1),
        verify_integrity=False,
    )  # fmt: skip
    # The point of the fast path: object arrays stay object (pandas 3 infers `str` otherwise).
    assert list(frame.dtypes) == [np.dtype(object), np.dtype(np.int64)], frame.dtypes


def _service_frame() -> pd.DataFrame:
    from serve.api_models import EXAMPLE_ROWS
    from serve.rows import frame
    from serve.validation import fast_rows

    batch = fast_rows([dict(r) for r in EXAMPLE_ROWS])
    assert batch is not None
    return frame(list(batch))


def _mlflow_enforce_schema() -> None:
    from mlflow.models.utils import _enforce_schema

    from churn.model import signature

    assert _params(_enforce_schema)[:2] == ["pf_input", "input_schema"], _params(_enforce_schema)
    sample = _service_frame()
    enforced = _enforce_schema(sample.copy(), signature().inputs)
    # signature_checked skips the check only when it hands the service's frames back unchanged.
    assert isinstance(enforced, pd.DataFrame) and enforced.equals(sample)


def _mlflow_type_hint_flags() -> None:
    from mlflow.models import Model

    from churn.model import signature

    meta = Model(signature=signature())
    assert meta._is_signature_from_type_hint() is False
    assert meta._is_type_hint_from_example() is False


def _mlflow_model_impl() -> None:
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    from churn.model import signature

    class Impl:
        def predict(self, data: Any, params: Any = None) -> Any:
            return data

    assert {"model_meta", "model_impl", "model_id"} <= set(_params(PyFuncModel.__init__))
    impl = Impl()
    model = PyFuncModel(model_meta=Model(signature=signature()), model_impl=impl, model_id=None)
    assert model._model_impl is impl


def _sklearn_validate_params() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils._param_validation import InvalidParameterError

    assert issubclass(InvalidParameterError, ValueError)
    with pytest.raises(InvalidParameterError) as refused:
        LogisticRegression(C=-1)._validate_params()
    # hyperparameter_errors cuts this sentence at " parameter of " and ". Got ".
    message = str(refused.value)
    assert message.startswith("The 'C' parameter of LogisticRegression must be "), message
    assert message.endswith(". Got -1 instead."), message


def _sklearn_infrequent_enabled() -> None:
    from sklearn.preprocessing import OneHotEncoder

    plain = OneHotEncoder(handle_unknown="ignore").fit([["a"], ["b"]])
    grouped = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=2)
    grouped.fit([["a"], ["a"], ["b"]])
    # Read with getattr(..., False): renamed, the guard would wave grouped encoders through.
    assert plain._infrequent_enabled is False and grouped._infrequent_enabled is True


def _skops_names(kind: model_types.ModelType, name: str) -> Callable[[], None]:
    def check() -> None:
        import importlib

        import skops.io

        module, _, attr = name.rpartition(".")
        assert inspect.isclass(getattr(importlib.import_module(module), attr))
        features = np.random.default_rng(0).normal(size=(40, 2))
        classifier = kind.estimator_class()(**{**_TINY.get(kind.name, {}), **kind.fixed})
        classifier.fit(features, (features[:, 0] > 0).astype(int))
        asked = skops.io.get_untrusted_types(data=skops.io.dumps(classifier))
        assert name in asked, f"skops now asks to trust {asked}"

    return check


# Small enough to fit in milliseconds; the stored types are the same.
_TINY = {"random_forest": {"n_estimators": 2}, "hist_gradient_boosting": {"max_iter": 2}}

INTERNALS = [
    Internal(
        "pandas DataFrame._from_arrays(arrays, columns=, index=, verify_integrity=)",
        "serve/rows.py Batch.frame",
        "every /predict builds its frame through the public constructor instead: about 0.6 ms "
        "more a request, a third of a one-row /predict (it falls back silently)",
        frozenset({"_from_arrays"}),
        _pandas_from_arrays,
    ),
    Internal(
        "mlflow.models.utils._enforce_schema(pf_input, input_schema)",
        "serve/holder.py signature_checked",
        "the signature check runs on every predict again (~1.5 ms a 1,000-row batch; it falls "
        "back silently)",
        frozenset({"mlflow.models.utils._enforce_schema"}),
        _mlflow_enforce_schema,
    ),
    Internal(
        "mlflow Model._is_signature_from_type_hint(), Model._is_type_hint_from_example()",
        "serve/holder.py signature_checked",
        "the signature check runs on every predict again (it falls back silently)",
        frozenset({"_is_signature_from_type_hint", "_is_type_hint_from_example"}),
        _mlflow_type_hint_flags,
    ),
    Internal(
        "mlflow PyFuncModel._model_impl (and PyFuncModel(model_meta=, model_impl=, model_id=))",
        "serve/holder.py SignatureChecked; churn/loading.py load_checked",
        "the signature check runs on every predict again; loading a checked version fails",
        frozenset({"_model_impl"}),
        _mlflow_model_impl,
    ),
    Internal(
        "sklearn.utils._param_validation.InvalidParameterError, BaseEstimator._validate_params()",
        "churn/model.py hyperparameter_errors",
        "params.yaml's hyper-parameters are no longer checked (or worded by key) before training",
        frozenset({"sklearn.utils._param_validation", "_validate_params"}),
        _sklearn_validate_params,
    ),
    Internal(
        "sklearn OneHotEncoder._infrequent_enabled",
        "churn/model.py _Encoding",
        "the fast encoding no longer refuses an encoder grouping infrequent categories: wrong "
        "probabilities for such a model",
        frozenset({"_infrequent_enabled"}),
        _sklearn_infrequent_enabled,
    ),
    *(
        Internal(
            f"{name} (skops trust list of {kind.name})",
            "churn/model_types.py",
            f"training a {kind.name} registers a model loading refuses (untrusted type)",
            frozenset({name}),
            _skops_names(kind, name),
        )
        for kind in model_types.MODEL_TYPES.values()
        for name in kind.trusted
        if re.search(r"\._", name)
    ),
]


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda i: i.what.split("(")[0].strip())
def test_the_private_internal_is_where_we_use_it(internal: Internal) -> None:
    try:
        internal.check()
    except Exception as exc:  # an ImportError, AttributeError or changed shape alike
        pytest.fail(
            f"{internal.what} moved or changed ({type(exc).__name__}: {exc}): {internal.breaks}. "
            f"Relied on by {internal.where}: adapt it there, then this entry.",
            pytrace=False,
        )


# namedtuple's public API begins with an underscore too.
_PUBLIC = {"_make", "_replace", "_asdict", "_fields", "_field_defaults"}
_LIBRARY_PATH = re.compile(r"(pandas|numpy|mlflow|sklearn|pyarrow|skops)(\.\w+)*\._\w+(\.\w+)*")


def _defined(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id


def _private_uses(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and re.fullmatch(r"_[^_]\w*", node.attr):
            yield node.attr
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "getattr",
            "hasattr",
        ):
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and str(name.value).startswith("_"):
                yield str(name.value)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ("churn", "serve", "__future__"):
                continue
            if "._" in f".{node.module}":
                yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Constant) and _LIBRARY_PATH.fullmatch(str(node.value)):
            yield str(node.value)


def test_every_private_use_is_listed() -> None:
    trees = {
        p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(encoding="utf-8"))
        for package in ("churn", "serve")
        for p in sorted((ROOT / package).rglob("*.py"))
    }
    ours = {name for tree in trees.values() for name in _defined(tree)} | _PUBLIC
    used: dict[str, set[str]] = {}
    for path, tree in trees.items():
        for name in _private_uses(tree):
            if name not in ours:
                used.setdefault(name, set()).add(path)
    listed = set().union(*(i.names for i in INTERNALS))
    unlisted = sorted(f"{n} ({', '.join(sorted(used[n]))})" for n in set(used) - listed)
    assert not unlisted, f"private library internals without an entry in INTERNALS: {unlisted}"
    assert not listed - set(used), f"entries nobody uses any more: {sorted(listed - set(used))}"


def test_a_moved_internal_fails_naming_what_breaks_and_where(monkeypatch: Any) -> None:
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    with pytest.raises(pytest.fail.Exception) as failed:
        test_the_private_internal_is_where_we_use_it(INTERNALS[0])
    assert str(failed.value).startswith("pandas DataFrame._from_arrays(")
    assert "moved or changed (AttributeError" in str(failed.value)
    assert "Relied on by serve/rows.py Batch.frame" in str(failed.value)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("x = pd.DataFrame._from_arrays(a)", ["_from_arrays"]),
        ("getattr(encoder, '_infrequent_enabled', False)", ["_infrequent_enabled"]),
        ("from sklearn.utils._param_validation import E", ["sklearn.utils._param_validation"]),
        (
            "from mlflow.models.utils import _enforce_schema",
            ["mlflow.models.utils._enforce_schema"],
        ),
        ("TRUSTED = ('sklearn.tree._tree.Tree',)", ["sklearn.tree._tree.Tree"]),
        ("from churn.x import _y\nfrom __future__ import annotations", []),
        ("row.__class__; 'sklearn.tree.Tree'", []),
    ],
)
def test_the_scan_finds_private_uses(source: str, found: list[str]) -> None:
    assert list(_private_uses(ast.parse(source))) == found
