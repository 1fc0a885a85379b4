"""The model-type registry: every classifier params.yaml's `model.type` may name, in one place.

A model type is its name (params.yaml's `model.type`, and the section `model.<name>` holding its
hyper-parameters), the scikit-learn classifier training builds, the arguments training sets
itself, and the types its fitted model stores that skops must be told to trust. Settings check
`model.type` against this registry, training builds from it, loading trusts what it lists. To
add a model type: one `register(ModelType(...))` line below, and its section in params.yaml.

Cheap to import (no scikit-learn): params.yaml is checked against it before anything is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ModelType:
    """One kind of classifier training can fit."""

    name: str
    # "module:Class", imported when a model is built or its hyper-parameters are checked.
    estimator: str
    # Arguments training sets itself; params.yaml may not. One job: the CI runners and the
    # containers have about one core each. random_state comes from `seed` when the class has one.
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # What the fitted model stores beyond skops' safe defaults and churn.model's own wrapper,
    # reviewed one by one (a crafted file could abuse a trusted type; ours are written by our own
    # training run, and loading is restricted to exactly the types listed here).
    trusted: tuple[str, ...] = ()

    def estimator_class(self) -> type[Any]:
        module, _, name = self.estimator.partition(":")
        cls: type[Any] = getattr(importlib.import_module(module), name)
        return cls


MODEL_TYPES: dict[str, ModelType] = {}
# Training's and params.yaml's default.
DEFAULT_MODEL_TYPE = "logistic_regression"


def register(model_type: ModelType) -> ModelType:
    """Add `model_type` (or replace the one of that name); returns it."""
    MODEL_TYPES[model_type.name] = model_type
    return model_type


def get(name: str) -> ModelType:
    """The registered type `name`; ValueError naming the ones there are otherwise."""
    if name not in MODEL_TYPES:
        raise ValueError(f"'{name}' is not one of {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[name]


register(ModelType("logistic_regression", "sklearn.linear_model:LogisticRegression"))
register(
    ModelType(
        "random_forest",
        "sklearn.ensemble:RandomForestClassifier",
        fixed=MappingProxyType({"n_jobs": 1}),
        # The tree node storage, which skops flags because a crafted file could index out of
        # bounds.
        trusted=("sklearn.tree._tree.Tree",),
    )
)
register(
    ModelType(
        "hist_gradient_boosting",
        "sklearn.ensemble:HistGradientBoostingClassifier",
        trusted=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
    )
)
