"""How long a fleet of API replicas takes to serve a new champion after a promotion, measured.

    python -m deploy.fleet_convergence                  # 3 replicas, poll every 10 s, 5 rounds
    python -m deploy.fleet_convergence --replicas 5 --interval 5 --rounds 10

What runs, all real and on this machine: one `mlflow server` (SQLite store and proxied
artifacts in a temporary directory), two small trained versions of `churn`, and N replicas of
the service, each its own uvicorn process started with the Dockerfile's command line, like N
pods behind a Service: they share nothing but the tracking server. Replica starts are staggered
by a random fraction of the interval, as pods started at different times poll out of phase.

Each round waits a random fraction of the interval, moves @challenger to the version not served,
then runs churn.registry.promote (what promote.py does; the gate passes on a tie) and times,
from that call, until each replica's GET /model reports the new version. Modes:

  poll          polling only (CHURN_RELOAD_INTERVAL): what replicas behind a Service get
  webhook-one   plus an MLflow webhook to one address: a webhook to a Service reaches one pod,
                the others still converge by polling
  webhook-each  plus a webhook per replica (as if something fanned the event out to every pod)

exit codes: 0 measured; 1 a replica did not serve the new version in time, or a process failed;
2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from churn.cli import quiet_mlflow
from churn.procs import NotReadyError, free_port, stop_process, wait_for_http
from deploy.k8s_lint import dockerfile_runtime

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODES = ("poll", "webhook-one", "webhook-each")
SECRET = "fleet-convergence-webhook-secret"
# The tracking server re-reads its webhook list this often (60 s by default): short here, so a
# webhook registered between modes is used at once.
WEBHOOK_CACHE_TTL_S = 1


class FleetError(Exception):
    """A process did not start, or a replica did not converge."""


@contextlib.contextmanager
def process(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop_process(proc)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen[bytes]
    tmpdir: Path

    def served(self, http: httpx.Client) -> int | None:
        try:
            served = http.get(f"{self.url}/model").json().get("served")
        except (httpx.HTTPError, ValueError):
            return None
        return int(served["version"]) if served else None

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def tmp_usage(self) -> tuple[int, float]:
        """Directories left in TMPDIR (model downloads), and their size in MiB."""
        dirs = [p for p in self.tmpdir.iterdir() if p.is_dir()]
        size = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
        return len(dirs), size / 2**20


@dataclass
class Round:
    mode: str
    version: int
    promote_s: float
    seconds: list[float] = field(default_factory=list)  # per replica, from the promote call


def train_two(uri: str, work: Path) -> tuple[int, int]:
    """Two versions of equal quality (same data, params and seed): the gate passes on a tie."""
    from churn import data, tracking
    from churn.settings import DataParams, Params
    from churn.training import train

    path = work / "customers.parquet"
    data.write_parquet(data.normalise(data.generate(rows=3_000, seed=7)), path)
    params = Params(seed=7, data=DataParams(rows=3_000), model_params={"C": 1.0, "max_iter": 1000})
    client = tracking.connect(uri)
    # root=work: not a git checkout, so training records no commit and never runs git here.
    first = train(params, client, uri, data_path=path, reports_dir=None, root=work).version
    second = train(params, client, uri, data_path=path, reports_dir=None, root=work).version
    return first, second


def promote_round(
    client: MlflowClient, replicas: list[Replica], mode: str, target: int, timeout: float
) -> Round:
    from churn import registry
    from churn.settings import CHALLENGER, MODEL_NAME

    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, str(target))
    start = time.perf_counter()
    result = registry.promote(client, metric="auc", epsilon=0.0)
    promoted = time.perf_counter()
    if not result.promoted:
        raise FleetError(f"promote refused v{target}: {result.decision}")
    seconds: dict[int, float] = {}
    with httpx.Client(timeout=5.0) as http:
        while len(seconds) < len(replicas):
            for i, replica in enumerate(replicas):
                if i not in seconds and replica.served(http) == target:
                    seconds[i] = time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                late = [r.url for i, r in enumerate(replicas) if i not in seconds]
                raise FleetError(f"{mode}: v{target} not served by {late} within {timeout:.0f} s")
            time.sleep(0.02)
    return Round(mode, target, promoted - start, [seconds[i] for i in range(len(replicas))])


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} {max(values):6.2f}"


def report(rounds: list[Round], replicas: list[Replica], interval: float) -> None:
    n = len(replicas)
    print()
    print(f"seconds from `promote` to GET /model reporting the new version ({n} replicas)")
    print(
        f"{'mode':<13} {'rounds':>6}  {'first replica':>13}  {'all replicas':>13}  per round (all)"
    )
    print(f"{'':<13} {'':>6}  {'median    max':>13}  {'median    max':>13}")
    for mode in dict.fromkeys(r.mode for r in rounds):
        mine = [r for r in rounds if r.mode == mode]
        first = [min(r.seconds) for r in mine]
        fleet = [max(r.seconds) for r in mine]
        each = " ".join(f"{s:.1f}" for s in fleet)
        print(f"{mode:<13} {len(mine):>6}  {_fmt(first):>13}  {_fmt(fleet):>13}  {each}")
    promote_ms = statistics.median(r.promote_s for r in rounds) * 1000
    print(f"(the promote call itself: median {promote_ms:.0f} ms; polling bound: {interval:g} s)")
    loads = len(rounds) + 1
    usage = [r.tmp_usage() for r in replicas]
    print(
        f"per replica after {loads} loads: resident memory "
        f"{', '.join(f'{r.rss_mib():.0f}' for r in replicas)} MiB; left in TMPDIR: "
        f"{', '.join(f'{d} dirs ({mib:.1f} MiB)' for d, mib in usage)}"
    )
    load1, _, load15 = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load1:.1f} (1 min), {load15:.1f} (15 min)"
    )


def start_replica(
    stack: contextlib.ExitStack, work: Path, i: int, uri: str, interval: float
) -> Replica:
    """`uvicorn --factory serve.app:main` (the Dockerfile's CMD) with a pod's environment."""
    home, tmpdir = work / f"replica-{i}" / "home", work / f"replica-{i}" / "tmp"
    home.mkdir(parents=True)
    tmpdir.mkdir()
    port = free_port()
    env = base_env(
        MLFLOW_TRACKING_URI=uri,
        CHURN_RELOAD_INTERVAL=str(interval),
        CHURN_WEBHOOK_SECRET=SECRET,
        TMPDIR=str(tmpdir),
        HOME=str(home),
    )
    # The image's CMD as the Dockerfile spells it (read, not copied), on this replica's address.
    argv = list(dockerfile_runtime().cmd)
    argv[0] = str(BIN / argv[0])
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    proc = stack.enter_context(process(argv, work / f"replica-{i}.log", env))
    return Replica(f"http://127.0.0.1:{port}", proc, tmpdir)


def start_server(stack: contextlib.ExitStack, work: Path) -> str:
    """One `mlflow server` on a SQLite store in `work`, webhooks allowed to this host: its URI."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server_env = base_env(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_CACHE_TTL=str(WEBHOOK_CACHE_TTL_S),
    )
    server_argv = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
        "--artifacts-destination", str(work / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server = stack.enter_context(process(server_argv, work / "mlflow.log", server_env))
    wait_for_http(f"{uri}/health", timeout=120, proc=server)
    return uri


def start_fleet(
    stack: contextlib.ExitStack, work: Path, uri: str, args: argparse.Namespace, rng: random.Random
) -> list[Replica]:
    """`args.replicas` replicas started out of phase, like pods started at different times."""
    replicas: list[Replica] = []
    for i in range(args.replicas):
        if i:
            time.sleep(rng.uniform(0, args.interval))
        replicas.append(start_replica(stack, work, i, uri, args.interval))
    for replica in replicas:
        wait_for_http(f"{replica.url}/ready", timeout=180, proc=replica.proc)
    return replicas


def measure_modes(
    client: MlflowClient, replicas: list[Replica], args: argparse.Namespace, rng: random.Random,
    versions: tuple[int, int],
) -> list[Round]:  # fmt: skip
    """`args.rounds` promotions per mode, in MODES order (each mode adds webhooks, none removes
    one), alternating the served version; each round timed until every replica serves it."""
    v1, v2 = versions
    rounds: list[Round] = []
    served, hooks = v1, 0
    for mode in args.modes:
        for i in range(hooks, {"poll": 0, "webhook-one": 1}.get(mode, len(replicas))):
            client.create_webhook(
                name=f"replica-{i}",
                url=f"{replicas[i].url}/webhooks/mlflow",
                events=["model_version_alias.created"],
                secret=SECRET,
            )
            hooks += 1
        time.sleep(WEBHOOK_CACHE_TTL_S + 1)
        for _ in range(args.rounds):
            time.sleep(rng.uniform(0, args.interval))
            served = v2 if served == v1 else v1
            done = promote_round(client, replicas, mode, served, 2 * args.interval + 60)
            rounds.append(done)
            each = ", ".join(f"{s:.2f}" for s in done.seconds)
            print(f"  {mode:<12} v{served}: {each} s", flush=True)
    return rounds


def run(args: argparse.Namespace) -> int:
    # Training's chatter (run links, schema hints) is not what this script reports.
    quiet_mlflow(level="ERROR")
    from churn import tracking
    from churn.settings import CHAMPION, MODEL_NAME

    rng = random.Random(args.seed)
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            work = args.workdir.resolve()
            work.mkdir(parents=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
        uri = start_server(stack, work)
        print(f"mlflow server {uri}; training two versions", flush=True)
        os.environ.update(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
        v1, v2 = train_two(uri, work)
        client = tracking.connect(uri)
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(v1))
        replicas = start_fleet(stack, work, uri, args, rng)
        print(f"{len(replicas)} replicas serving v{v1}, polling every {args.interval:g} s")
        rounds = measure_modes(client, replicas, args, rng, (v1, v2))
        report(rounds, replicas, args.interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deploy.fleet_convergence",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="exit codes: 0 measured; 1 no convergence or a process failed; 2 usage error",
    )
    p.add_argument("--replicas", type=int, default=3, help="API replicas (default 3)")
    p.add_argument(
        "--interval", type=float, default=10.0, help="CHURN_RELOAD_INTERVAL, s (default 10)"
    )
    p.add_argument("--rounds", type=int, default=5, help="promotions per mode (default 5)")
    p.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="in this order (default all)"
    )
    p.add_argument("--seed", type=int, default=0, help="random phases and waits (default 0)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="a new directory to keep the store and every process's log in (default: a "
        "temporary one, removed)",
    )
    args = p.parse_args(argv)
    if args.replicas < 1 or args.rounds < 1 or not args.interval > 0:
        p.error("--replicas and --rounds must be >= 1, --interval > 0")
    if args.workdir is not None and args.workdir.exists():
        p.error(f"--workdir {args.workdir}: must not exist yet")
    if list(args.modes) != [m for m in MODES if m in args.modes]:
        p.error(f"--modes: give them in the order {' '.join(MODES)}")
    try:
        return run(args)
    except (FleetError, NotReadyError, TimeoutError) as exc:
        print(f"fleet_convergence: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
