"""Names, paths and the typed view of params.yaml. Nothing here touches the network or the disk
at import time; callers ask for what they need."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from churn import model_types, redact

MODEL_NAME = "churn"
EXPERIMENT_NAME = "churn"
CHAMPION = "champion"
CHALLENGER = "challenger"
PREV_CHAMPION = "prev-champion"
ALIASES = (CHAMPION, CHALLENGER, PREV_CHAMPION)

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"
DATA_FILE = ROOT / "data" / "customers.parquet"
DVC_LOCK = ROOT / "dvc.lock"
REPORTS_DIR = ROOT / "reports"
# The service's prediction log (serve/config.py's CHURN_ prefix + prediction_log), and the
# default log of `churn outcomes` and `churn live-eval`
PREDICTION_LOG_ENV = "CHURN_PREDICTION_LOG"

# Metrics train.py logs; the gate may use any of them.
METRICS = ("auc", "f1", "precision", "recall", "accuracy", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})


class ParamsError(ValueError):
    """params.yaml is missing or holds a value we cannot use."""


def default_tracking_uri(root: Path = ROOT) -> str:
    """Embedded SQLite store in the repository, so nothing needs a server."""
    return f"sqlite:///{root / 'mlflow.db'}"


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri beats MLFLOW_TRACKING_URI beats the embedded default; credentials in it
    are handed to MLflow the way it takes them (`use_credentials`)."""
    return use_credentials(
        explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    )


def use_credentials(uri: str) -> str:
    """`uri` without the `user:password@` of an http(s) tracking server, which go to MLflow's
    own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead (the URI's win, as they
    did when requests read them from the URL). Scripts and the service both come through here.

    Why: MLflow sends those variables as HTTP basic auth on every call, REST and artifacts
    alike; left in the URI, the password is in every message that quotes it (MLflow's own
    "API request to http://user:secret@host/... failed"), and urllib (the /health check)
    cannot parse it. A database URI (postgresql://user:pw@db/mlflow) keeps its credentials:
    SQLAlchemy reads them there; `churn.redact` masks them in whatever is shown."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    # Without a ':' the userinfo is often a token (https://TOKEN@host): a secret as well.
    redact.remember(password if colon else user)
    if colon:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


# ---------------------------------------------------------------------------------------------
# params.yaml, typed: each key's type, default and rule written once, below. A wrong value is a
# ParamsError naming its key (exit 2), in the words of the rule that refused it.


def _refuse(message: str) -> PydanticCustomError:
    # The message goes through the context, so braces in a quoted value are never a template.
    return PydanticCustomError("params", "{message}", {"message": message})


def _integer(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # YAML's 20000.0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(f"must be an integer, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _refuse(f"must be a finite number, got {value!r}")
    return float(value)


def _rule(holds: Callable[[Any], bool], rule: str) -> AfterValidator:
    """A range rule: `rule, got <value>` when `holds(value)` is false."""

    def check(value: Any) -> Any:
        if not holds(value):
            raise _refuse(f"{rule}, got {value}")
        return value

    return AfterValidator(check)


def _one_of(choices: Callable[[], Iterable[str]]) -> AfterValidator:
    """A choice among `choices()`, read when checked: a model type registered after this module
    was imported (churn/model_types.py's `register`) is a valid `model.type` from then on."""

    def check(value: str) -> str:
        known = list(choices())
        if value not in known:
            raise _refuse(f"'{value}' is not one of {', '.join(known)}")
        return value

    return AfterValidator(check)


Integer = Annotated[int, BeforeValidator(_integer)]
Number = Annotated[float, BeforeValidator(_number)]
Text = Annotated[str, BeforeValidator(str)]
# Keys no model declares are left alone, as DVC leaves them: params.yaml may hold other tools'.
_FROZEN = ConfigDict(frozen=True, extra="ignore")


class DataParams(BaseModel):
    model_config = _FROZEN

    source: Text = "generator"
    rows: Annotated[Integer, _rule(lambda n: n >= 100, "must be at least 100")] = 20_000
    snapshot: Text = "2026-07"


class GateParams(BaseModel):
    model_config = _FROZEN

    metric: Annotated[Text, _one_of(lambda: METRICS)] = "auc"
    # A negative epsilon lets a worse challenger through the gate.
    epsilon: Annotated[
        Number,
        _rule(lambda e: 0.0 <= e < 1.0, "must be in [0, 1) (the least improvement that promotes)"),
    ] = 0.002
    # promote.py --reevaluate: paired bootstrap resamples of the holdout (seeded by `seed`).
    bootstrap_resamples: Annotated[Integer, _rule(lambda n: n >= 100, "must be at least 100")] = (
        1000
    )


class DriftParams(BaseModel):
    """`python -m churn drift`: PSI thresholds (per feature and on the champion's predictions)."""

    model_config = _FROZEN

    psi_warn: Number = 0.1
    psi_alert: Number = 0.25
    bins: Annotated[Integer, _rule(lambda n: 2 <= n <= 100, "must be in 2..100")] = 10

    @model_validator(mode="after")
    def _ordered(self) -> DriftParams:
        if not 0.0 < self.psi_warn <= self.psi_alert:
            raise _refuse(
                "needs 0 < psi_warn <= psi_alert, got "
                f"psi_warn={self.psi_warn}, psi_alert={self.psi_alert}"
            )
        return self


# params.yaml's sections; `split` and `model` are flattened into Params under the names the code
# has always used: field -> its key in params.yaml.
_SECTIONS = ("data", "split", "model", "gate", "drift")
_FLATTENED = {"test_size": "split.test_size", "model_type": "model.type"}


class Params(BaseModel):
    model_config = _FROZEN

    seed: Annotated[Integer, _rule(lambda n: 0 <= n < 2**32, "must be in 0..2**32-1")] = 42
    data: DataParams = Field(default_factory=DataParams)
    test_size: Annotated[Number, _rule(lambda t: 0.0 < t < 1.0, "must be in (0, 1)")] = 0.2
    model_type: Annotated[Text, _one_of(lambda: model_types.MODEL_TYPES)] = (
        model_types.DEFAULT_MODEL_TYPE
    )
    # The hyper-parameters of `model_type`: params.yaml's `model.<model_type>`.
    model_params: dict[str, Any] = Field(default_factory=dict)
    threshold: Annotated[Number, _rule(lambda t: 0.0 < t < 1.0, "must be in (0, 1)")] = 0.5
    gate: GateParams = Field(default_factory=GateParams)
    drift: DriftParams = Field(default_factory=DriftParams)

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, raw: Any) -> Any:
        """params.yaml's layout: every section a mapping; `split.test_size`, `model.type` and
        `model.<type>` are test_size, model_type and model_params."""
        if not isinstance(raw, dict):
            return raw
        for key in _SECTIONS:
            if not isinstance(raw.get(key, {}), (dict, BaseModel)):
                raise _refuse(f"'{key}' must be a mapping, got {raw[key]!r}")
        out = {k: v for k, v in raw.items() if k not in ("split", "model")}
        split, model = raw.get("split") or {}, raw.get("model") or {}
        if "test_size" in split:
            out["test_size"] = split["test_size"]
        if "type" in model:
            out["model_type"] = model["type"]
        for name in {*model_types.MODEL_TYPES, str(model.get("type"))}:
            if not isinstance(model.get(name, {}), dict):
                raise _refuse(f"'model.{name}' must be a mapping, got {model[name]!r}")
        section = model.get(str(model.get("type", model_types.DEFAULT_MODEL_TYPE)))
        if section:
            out["model_params"] = dict(section)
        return out

    def flat(self) -> dict[str, Any]:
        """What train.py logs as MLflow params (dotted names, as `dvc params diff` shows them)."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "data.source": self.data.source,
            "data.rows": self.data.rows,
            "data.snapshot": self.data.snapshot,
            "split.test_size": self.test_size,
            "model.type": self.model_type,
            "threshold": self.threshold,
        }
        out.update({f"model.{self.model_type}.{k}": v for k, v in self.model_params.items()})
        return out


def _problem(error: ErrorDetails) -> str:
    """One validation error as `<dotted key> <what is wrong>`."""
    key = ".".join(str(part) for part in error["loc"])
    key = _FLATTENED.get(key, key)
    if error["type"] == "params":
        message = str((error.get("ctx") or {})["message"])
        return f"{key} {message}" if key else message
    if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return f"'{key}' must be a mapping, got {error['input']!r}"
    return f"{key}: {error['msg']}"


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of keys, got {type(raw).__name__}")
    return raw


def load_params(path: Path = PARAMS_FILE, check_model: bool = True) -> Params:
    """params.yaml, every value checked: a wrong one is a ParamsError naming its key (exit 2).
    `check_model=False` skips the hyper-parameters' check (it imports scikit-learn)."""
    raw = _read(path)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ParamsError(f"params.yaml: {problems[0]}{more}") from None
    if check_model:
        _check_hyperparameters(raw.get("model") or {})
    return params


def _check_hyperparameters(model: dict[str, Any]) -> None:
    """Every model type's section present, not only the one trained: switching `model.type` must
    not reveal a bad value a pipeline run later."""
    from churn.model import hyperparameter_errors

    errors = [
        error
        for model_type in model_types.MODEL_TYPES
        if isinstance(model.get(model_type), dict)
        for error in hyperparameter_errors(model_type, model[model_type])
    ]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ParamsError(f"params.yaml: {errors[0]}{more}")


def set_data_snapshot(snapshot: str, path: Path = PARAMS_FILE) -> str:
    """Set `data.snapshot` in params.yaml in place; returns the old one.

    A round trip through ruamel.yaml, so the file's comments, order and quoting survive; the
    result is re-read and checked to differ from the original in that one key only.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

    text = path.read_text()
    before = yaml.safe_load(text) or {}
    editor = YAML()  # round-trip mode
    editor.preserve_quotes = True
    doc = editor.load(text)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not (isinstance(data, dict) and "snapshot" in data):
        raise ParamsError(f"{path}: no data.snapshot line to update; add `snapshot:` under data:")
    # Quoted as it was, double quotes if it was not: an unquoted 2026-07 is a string too, but a
    # reader should not have to know YAML's date rules to see that.
    old = data["snapshot"]
    quoted = type(old) if isinstance(old, ScalarString) else DoubleQuotedScalarString
    data["snapshot"] = quoted(snapshot)
    out = io.StringIO()
    editor.dump(doc, out)
    new_text = out.getvalue()
    expected = dict(before, data=dict(before.get("data", {}), snapshot=snapshot))
    if yaml.safe_load(new_text) != expected:
        raise ParamsError(f"{path}: could not update data.snapshot safely; edit it by hand")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(new_text)
    os.replace(partial, path)
    return str(before.get("data", {}).get("snapshot", ""))
