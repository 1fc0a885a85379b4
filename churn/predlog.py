"""The prediction log: every row the service scored, as Parquet files partitioned by day.

Layout under the log's root (a local folder, or `s3://bucket/prefix` through pyarrow's
filesystem layer):

    day=2026-11-20/part-<utc time>-<random>.parquet    one file per flush, never rewritten
    outcomes/part-<utc time>-<random>.parquet          `churn outcomes --labels FILE`

A file appears whole or not at all: written under a hidden name (`.part-….parquet.partial`),
then renamed (on S3 an upload is atomic already). Readers skip hidden names, so a flush cut by a
crash leaves nothing behind that a reader would take for data; the next writer to start removes
such leftovers once they are old enough that no live writer can still be writing them.

Columns (LOG_COLUMNS): ts (UTC), request_id, customerID, version, role (champion, challenger or
shadow), p_churn, decision (p_churn >= the served version's threshold), then the validated
features in schema order.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import Any

import pandas as pd

from churn import schema

ROLES = ("champion", "challenger", "shadow")
META_COLUMNS = ("ts", "request_id", schema.ID_COLUMN, "version", "role", "p_churn", "decision")
LOG_COLUMNS = META_COLUMNS + tuple(schema.FEATURE_NAMES)
DAY_PREFIX = "day="
OUTCOMES_DIR = "outcomes"
FLUSH_ROWS = 20_000  # the writer's largest file, in rows (bench/live_eval.py writes the same)
FLUSH_SECONDS = 5.0  # and the longest it waits between files (bench/serve.py's log slices)
_HIDDEN = (".", "_")
_PARTIAL = ".partial"
# A partial file exists only while one flush is written (at most FLUSH_ROWS rows: well under a
# second on a local disk) and its mtime moves with every write. One untouched for this long has
# no live writer behind it, even with workers of other processes sharing the log, a slow disk or
# a 20-second stall: its writer was killed between write and rename.
STALE_PARTIAL_AGE = timedelta(hours=1)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A log root on a pyarrow filesystem: `fs` plus the path inside it."""

    fs: object  # pyarrow.fs.FileSystem (untyped package)
    path: str

    @classmethod
    def of(cls, root: str) -> Location:
        from pyarrow import fs

        if "://" in root:
            filesystem, path = fs.FileSystem.from_uri(root)
        else:
            filesystem, path = fs.LocalFileSystem(), str(root)
        return cls(filesystem, path.rstrip("/"))

    def join(self, *parts: str) -> str:
        return "/".join((self.path, *parts))


def part_name(now: datetime | None = None) -> str:
    """A name that sorts by write time and never collides across workers."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{stamp}-{secrets.token_hex(4)}.parquet"


def _partial_of(name: str) -> str:
    return f".{name}{_PARTIAL}"


def is_partial(base_name: str) -> bool:
    """A name `write_frame` writes before its rename, and nothing else."""
    return base_name.startswith(".part-") and base_name.endswith(f".parquet{_PARTIAL}")


def write_frame(loc: Location, folder: str, frame: pd.DataFrame) -> str:
    """`frame` as one new Parquet file in `folder`, whole or not at all; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem = loc.fs
    target_dir = loc.join(folder)
    filesystem.create_dir(target_dir, recursive=True)  # type: ignore[attr-defined]
    name = part_name()
    final = f"{target_dir}/{name}"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if type(filesystem).__name__ != "LocalFileSystem":
        pq.write_table(table, final, filesystem=filesystem)  # an object PUT is atomic
        return final
    hidden = f"{target_dir}/{_partial_of(name)}"
    pq.write_table(table, hidden, filesystem=filesystem)
    filesystem.move(hidden, final)  # type: ignore[attr-defined]  # rename(2): atomic
    return final


def day_folder(day: date) -> str:
    return f"{DAY_PREFIX}{day.isoformat()}"


def append(loc: Location, rows: pd.DataFrame) -> list[str]:
    """Write scored rows (LOG_COLUMNS) as one file per day they fall on."""
    ts = pd.to_datetime(rows["ts"], utc=True)
    written = []
    for day, part in rows.groupby(ts.dt.date, sort=True):
        written.append(write_frame(loc, day_folder(day), part[list(LOG_COLUMNS)]))
    return written


def _parquet_files(loc: Location, folder: str) -> list[str]:
    from pyarrow import fs

    selector = fs.FileSelector(loc.join(folder), allow_not_found=True)
    infos = loc.fs.get_file_info(selector)  # type: ignore[attr-defined]
    return sorted(
        i.path
        for i in infos
        if i.type == fs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith(_HIDDEN)
    )


def _read_files(loc: Location, files: Iterable[str], columns: tuple[str, ...]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    frames = [pq.read_table(f, filesystem=loc.fs).to_pandas() for f in files]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return pd.concat(frames, ignore_index=True)


def days(loc: Location) -> list[date]:
    """The days the log holds, oldest first."""
    from pyarrow import fs

    infos = loc.fs.get_file_info(  # type: ignore[attr-defined]
        fs.FileSelector(loc.path, allow_not_found=True)
    )
    found = []
    for info in infos:
        if info.type == fs.FileType.Directory and info.base_name.startswith(DAY_PREFIX):
            try:
                found.append(date.fromisoformat(info.base_name[len(DAY_PREFIX) :]))
            except ValueError:
                continue  # not ours
    return sorted(found)


def read(loc: Location, since: datetime, until: datetime) -> pd.DataFrame:
    """Rows scored in [since, until), from the day folders that can hold them."""
    wanted = [d for d in days(loc) if since.date() <= d <= until.date()]
    files = [f for d in wanted for f in _parquet_files(loc, day_folder(d))]
    frame = _read_files(loc, files, LOG_COLUMNS)
    if frame.empty:
        return frame
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    keep = (frame["ts"] >= since) & (frame["ts"] < until)
    return frame.loc[keep].reset_index(drop=True)


def prune(loc: Location, keep_days: int, today: date | None = None) -> list[date]:
    """Delete day folders older than the last `keep_days` days; returns the days removed."""
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days - 1)
    old = [d for d in days(loc) if d < cutoff]
    for d in old:
        loc.fs.delete_dir(loc.join(day_folder(d)))  # type: ignore[attr-defined]
    return old


def remove_stale_partials(
    loc: Location, older_than: timedelta = STALE_PARTIAL_AGE, now: datetime | None = None
) -> list[str]:
    """Delete the partial files (`is_partial`) that a killed writer left in the log's day and
    outcomes folders, last written more than `older_than` ago; returns their paths. Finished
    files and any other name are never touched."""
    from pyarrow import fs

    cutoff = (now or datetime.now(UTC)) - older_than
    folders = [day_folder(d) for d in days(loc)] + [OUTCOMES_DIR]
    removed = []
    for folder in folders:
        selector = fs.FileSelector(loc.join(folder), allow_not_found=True)
        for info in loc.fs.get_file_info(selector):  # type: ignore[attr-defined]
            if (
                info.type == fs.FileType.File
                and is_partial(info.base_name)
                and info.mtime is not None
                and info.mtime < cutoff
            ):
                loc.fs.delete_file(info.path)  # type: ignore[attr-defined]
                removed.append(info.path)
    return removed


def read_outcomes(loc: Location) -> pd.DataFrame:
    from churn.outcomes import OUTCOME_COLUMNS

    frame = _read_files(loc, _parquet_files(loc, OUTCOMES_DIR), OUTCOME_COLUMNS)
    if not frame.empty:
        frame["observed_at"] = pd.to_datetime(frame["observed_at"], utc=True)
    return frame


# ---------------------------------------------------------------------------------------------
# The writer the service feeds: off the request path, bounded, never failing a request.


@dataclass
class Scored:
    """One request's rows as the service scored them: references only, nothing is built on the
    request's thread. The writer turns the rows of every request of a flush into one frame."""

    ts: datetime
    request_id: str
    ids: Sequence[str | None]
    version: int
    role: str
    p_churn: Any  # sequence of float, one per row
    threshold: float
    rows: Sequence[Any]  # the validated rows, each with one attribute per feature


def rows_frame(requests: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The features of many requests' rows (each with one attribute per feature), in schema
    order: the writer's default; the service gives its own typed builder (serve.rows)."""
    rows = list(chain.from_iterable(requests))
    return pd.DataFrame({n: [getattr(r, n) for r in rows] for n in schema.FEATURE_NAMES})


def batch_frame(
    batch: Sequence[Scored],
    features: Callable[[Sequence[Sequence[Any]]], pd.DataFrame] = rows_frame,
) -> pd.DataFrame:
    """The log's rows (LOG_COLUMNS) of many requests, built column by column in one go: a
    frame per request cost ~5 ms of CPU each, more than scoring a one-row request."""
    import numpy as np

    sizes = np.fromiter((len(s.ids) for s in batch), dtype=np.int64, count=len(batch))

    def each(values: Iterable[Any], dtype: Any = None) -> Any:
        return np.repeat(np.array(list(values), dtype=dtype), sizes)

    p = np.concatenate([np.asarray(s.p_churn, dtype=np.float64) for s in batch])
    meta = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex([s.ts for s in batch]).as_unit("us").repeat(sizes),
            "request_id": each((s.request_id for s in batch), object),
            schema.ID_COLUMN: list(chain.from_iterable(s.ids for s in batch)),
            "version": each((s.version for s in batch), np.int64),
            "role": each((s.role for s in batch), object),
            "p_churn": p,
            "decision": p >= each(s.threshold for s in batch),
        }
    )
    rows = features([s.rows for s in batch]).reset_index(drop=True)
    return pd.concat([meta, rows[list(schema.FEATURE_NAMES)]], axis=1)


@dataclass
class WriterStats:
    written_rows: int = 0
    dropped_rows: int = 0
    failed_flushes: int = 0
    stale_partials_removed: int = 0  # crash leftovers removed at start (remove_stale_partials)


class Writer:
    """Appends what the service scored to the log from a thread of its own.

    `offer` only puts a reference on a bounded queue: it never waits, never raises. When the
    queue holds `max_pending_rows`, new rows are dropped and counted (stats.dropped_rows, shown
    in /metrics): the log is evidence, not a reason to slow or fail a request. Rows are flushed
    as one file per day every `flush_seconds` or `flush_rows`, whichever comes first; a failed
    flush (disk full, S3 down) drops that batch, counts it and keeps going. Its thread first
    removes the partial files a killed writer left behind (remove_stale_partials).
    """

    def __init__(
        self,
        root: str,
        max_pending_rows: int = 200_000,
        flush_rows: int = FLUSH_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
        keep_days: int = 90,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        features: Callable[[Sequence[Sequence[Any]]], pd.DataFrame] = rows_frame,
    ) -> None:
        import queue
        import threading

        self.location = Location.of(root)
        self.max_pending_rows = max_pending_rows
        self.flush_rows, self.flush_seconds, self.keep_days = flush_rows, flush_seconds, keep_days
        self.stats = WriterStats()
        self.on_written, self.on_dropped = on_written, on_dropped  # e.g. Prometheus counters
        self.features = features  # many requests' rows -> one features frame (batch_frame)
        self._queue: queue.SimpleQueue[Scored | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._pruned_on: date | None = None

    def start(self) -> Writer:
        self._thread.start()
        return self

    def offer(self, scored: Scored) -> bool:
        n = len(scored.ids)
        with self._lock:
            if self._pending + n > self.max_pending_rows:
                self.stats.dropped_rows += n
                self.on_dropped(n)
                return False
            self._pending += n
        self._queue.put(scored)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued, then stop (the service's shutdown)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        import queue
        import time

        self._remove_stale_partials()
        batch: list[Scored] = []
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            timed_out = False
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item, timed_out = None, True
            if item is not None:
                batch.append(item)
                rows += len(item.ids)
                if rows < self.flush_rows:
                    continue
            self._flush(batch, rows)
            batch, rows = [], 0
            deadline = time.monotonic() + self.flush_seconds
            if item is None and not timed_out:  # close(): flushed, done
                return

    def _flush(self, batch: list[Scored], rows: int) -> None:
        if not batch:
            return
        try:
            append(self.location, batch_frame(batch, self.features))
            self.stats.written_rows += rows
            self.on_written(rows)
            self._prune_daily()
        except Exception:  # the log must never take the service down
            logger.exception("prediction log: a flush of %d rows failed; dropped", rows)
            self.stats.failed_flushes += 1
            self.stats.dropped_rows += rows
            self.on_dropped(rows)
        finally:
            with self._lock:
                self._pending -= rows

    def _remove_stale_partials(self) -> None:
        """On the writer's thread: a listing of every day folder (on S3, many requests) must
        not delay the service's start."""
        try:
            removed = remove_stale_partials(self.location)
        except Exception:  # a log it cannot list now is a flush's problem, reported there
            logger.exception("prediction log: looking for stale partial files failed")
            return
        self.stats.stale_partials_removed = len(removed)
        if removed:
            logger.warning(
                "prediction log: removed %d partial file(s) left by a writer killed mid-flush "
                "(last written more than %s ago): %s",
                len(removed), STALE_PARTIAL_AGE, ", ".join(removed),
            )  # fmt: skip

    def _prune_daily(self) -> None:
        today = datetime.now(UTC).date()
        if self._pruned_on != today:
            prune(self.location, self.keep_days, today)
            self._pruned_on = today
