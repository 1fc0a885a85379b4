"""The DVC `prepare` stage: the data source in params.yaml -> data/customers.parquet.

Kept apart from `churn/__main__.py` so that dvc.yaml can depend on exactly the code that decides
the stage's output: adding a command to the CLI must not make DVC regenerate the data.
"""

from __future__ import annotations

from pathlib import Path

from churn import data, settings
from churn.errors import ChurnError
from churn.provenance import file_md5
from churn.schema import LABEL_COLUMN


def prepare(params_file: Path, out: Path) -> str:
    """Write the validated, typed data set; return the one-line summary the stage prints."""
    params = settings.load_params(params_file)
    d = params.data
    try:
        df = data.load_source(d.source, d.rows, params.seed, d.snapshot, settings.ROOT)
        data.check_trainable(df)  # stop here, before data/customers.parquet is replaced
    except (FileNotFoundError, data.DataValidationError) as exc:
        raise ChurnError(str(exc)) from exc
    data.write_parquet(df, out)
    rate = float(df[LABEL_COLUMN].mean())
    resolved = out.resolve()
    shown = resolved.relative_to(settings.ROOT) if resolved.is_relative_to(settings.ROOT) else out
    return f"prepared {shown}: {len(df):,} rows, churn rate {rate:.1%}, md5 {file_md5(resolved)}"
