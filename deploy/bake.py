"""Copy one registered version of `churn` into a small self-contained SQLite registry.

Used by the Dockerfile's `baked` stage at build time, for hosts that cannot reach a tracking
server (air-gapped): the image then serves `models:/churn/<version>` from `<out>/mlflow.db`.

    python -m deploy.bake --tracking-uri http://mlflow:5000 --version 4 --out /app/baked

The copy keeps what the service reports and /model shows: the same version number, the run's
metrics, params and tags, the version's tags; the run id is new (MLflow assigns it) and the
original is kept in the tags `baked_from_run` / `baked_from_version`. The service accepts only
`models:/` URIs (serve/config.py), which is why a registry is baked rather than a bare folder.

exit codes: 0 baked · 2 usage · 3 no such version · 4 source registry unreachable
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from churn import cli, settings, tracking
from churn.errors import RegistryStateError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

PROG = "deploy/bake.py"


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a version number >= 1, got '{text}'")
    return int(text)


def bake(source_uri: str, version: int, out: Path) -> str:
    """Copy `churn` v`version` from `source_uri` into `out`; return the baked registry URI."""
    from mlflow import MlflowClient

    mv, run, model_dir = _fetch(source_uri, version, out)
    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    dst = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = _copy_run(dst, uri, source_uri, version, run)
    _register(dst, version, model_dir, run_id, dict(mv.tags or {}))
    return uri


def _fetch(source_uri: str, version: int, out: Path) -> tuple[ModelVersion, Run | None, Path]:
    """The source's model version, its run (None if it has none) and the model downloaded."""
    import mlflow

    name = settings.MODEL_NAME
    src = tracking.connect(source_uri)
    with tracking.store_errors(source_uri):
        try:
            mv = src.get_model_version(name, str(version))
        except Exception as exc:
            raise RegistryStateError(
                f"{name} v{version} is not in the registry at {source_uri}: "
                "pick a version `python -m churn status` or the MLflow UI shows"
            ) from exc
        run = src.get_run(mv.run_id) if mv.run_id else None
        out.mkdir(parents=True, exist_ok=True)
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(out / "model")
            )
        )
    return mv, run, model_dir


def _copy_run(dst: MlflowClient, uri: str, source_uri: str, version: int, run: Run | None) -> str:
    """A finished run in `dst` with the source run's metrics, params and tags; its id."""
    from mlflow.entities import Metric, Param, RunTag

    name = settings.MODEL_NAME
    exp = tracking.ensure_experiment(dst, uri, settings.EXPERIMENT_NAME)
    tags = {"baked_from": source_uri.split("@")[-1], "baked_from_version": str(version)}
    if run is not None:
        tags |= {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        tags["baked_from_run"] = run.info.run_id
    new_run = dst.create_run(exp, tags=tags, run_name=f"baked-{name}-v{version}")
    if run is not None:
        dst.log_batch(
            new_run.info.run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in run.data.metrics.items()],
            params=[Param(k, v) for k, v in run.data.params.items()],
            tags=[RunTag("mlflow.runName", f"baked-{name}-v{version}")],
        )
    dst.set_terminated(new_run.info.run_id)
    return str(new_run.info.run_id)


def _register(
    dst: MlflowClient, version: int, model_dir: Path, run_id: str, tags: dict[str, str]
) -> None:
    """Register the model in `dst` under the same version number, @champion on it."""
    name = settings.MODEL_NAME
    dst.create_registered_model(name)
    # MLflow numbers versions itself (max + 1, deleted ones included): reserve and delete the
    # numbers below `version` so the baked copy answers with the number the team knows.
    for placeholder in range(1, version):
        dst.create_model_version(name, str(model_dir), run_id)
        dst.delete_model_version(name, str(placeholder))
    baked = dst.create_model_version(name, model_dir.resolve().as_uri(), run_id, tags=tags)
    assert int(baked.version) == version, (baked.version, version)
    dst.set_registered_model_alias(name, settings.CHAMPION, str(version))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tracking-uri", metavar="URI", help="the source registry")
    p.add_argument("--version", type=_positive, required=True, help="version of churn to bake")
    p.add_argument("--out", type=Path, required=True, help="directory for mlflow.db and model/")
    args = p.parse_args(argv)
    if args.tracking_uri is not None and not args.tracking_uri.strip():
        p.error(
            "--tracking-uri is empty: give the source registry (docker build --build-arg "
            "SOURCE_TRACKING_URI=...)"
        )

    def body() -> int:
        uri = bake(settings.tracking_uri(args.tracking_uri), args.version, args.out)
        print(f"baked {settings.MODEL_NAME} v{args.version} into {uri}")
        return 0

    return cli.run(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
