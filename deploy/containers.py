"""Build the project's images with a real container engine: Docker when it answers, else podman.

    python -m deploy.containers engine        # which engine this machine has, in one line
    python -m deploy.containers base-images   # the official bases, or local stand-ins for them
    python -m deploy.containers images        # base-images, then every target compose.yaml names

The Dockerfile's bases are build arguments whose defaults are the official images
(`ARG PYTHON_IMAGE=docker.io/library/python:...`, `ARG UV_IMAGE=ghcr.io/astral-sh/uv:...`).
Where those can be pulled they are used as they are. Where no image registry is reachable, each
is replaced by a local stand-in with the same interface, named `localhost/churn-stand-in/...`:
Python from Debian (`debootstrap --variant=minbase` + Debian's python3.11, as root), and uv's
binary from its PyPI wheel. The images are tagged as compose.yaml names them, so
`docker compose up` runs them without building (with podman: Compose v2 on its Docker API).

podman runs with a containers.conf of ours (CONTAINERS_CONF, unless already set): runc where it
is installed, cgroupfs and a file event log where systemd is not PID 1, no default ulimits.
Package downloads inside a build trust the CA bundle named by $SSL_CERT_FILE, given to the
builder stages as a build secret (never copied into an image).

exit codes: 0 done · 2 usage · 4 no working engine, a base that can be neither pulled nor
built, or a build that failed
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from churn.errors import USAGE, ChurnError

PROG = "python -m deploy.containers"
ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
STAND_IN = "localhost/churn-stand-in"
DEBIAN_SUITE = "bookworm"
PULL_TIMEOUT_S = 90
BUILD_TIMEOUT_S = 1800


class EngineError(ChurnError):
    """No working engine, a base that cannot be had, a build that failed: one line, exit 4."""

    exit_code = 4


# ---- what the project's files say ----------------------------------------------------------


def dockerfile_bases(path: Path = DOCKERFILE) -> dict[str, str]:
    """The Dockerfile's base-image build arguments and their defaults (`ARG *_IMAGE=...`)."""
    return dict(re.findall(r"^ARG\s+(\w+_IMAGE)=(\S+)\s*$", path.read_text(), re.MULTILINE))


def compose_images(path: Path = COMPOSE) -> dict[str, str]:
    """Build target -> image name, as compose.yaml's services build and name them."""
    services = yaml.safe_load(path.read_text())["services"]
    images: dict[str, str] = {}
    for service in services.values():
        target = (service.get("build") or {}).get("target")
        if target and "image" in service:
            images.setdefault(target, service["image"])
    return images


# ---- the engine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    name: str  # "docker" or "podman"
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(
        self, *args: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.name, *args], env=self.environ(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise EngineError(f"{self.name} {args[0]}: {last_line(proc)}")
        return proc

    def has_image(self, image: str) -> bool:
        return self.run("image", "inspect", image, timeout=60).returncode == 0


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else f"exit code {proc.returncode}"


def podman_conf() -> str:
    """containers.conf for this host: the settings podman's defaults get wrong without systemd."""
    systemd = Path("/run/systemd/system").is_dir()
    containers = ["[containers]", "default_ulimits = []"]
    engine = ["[engine]"]
    if shutil.which("runc"):
        engine.append('runtime = "runc"')
    if not systemd:
        engine += ['cgroup_manager = "cgroupfs"', 'events_logger = "file"']
    network = ["[network]"]
    if any(Path(d, "netavark").exists() for d in ("/usr/lib/podman", "/usr/libexec/podman")):
        network.append('network_backend = "netavark"')  # not the CNI files some hosts keep
    return "\n".join([*containers, "", *engine, "", *network]) + "\n"


def podman_env() -> dict[str, str]:
    """CONTAINERS_CONF pointing at our containers.conf (written once), unless the user set one."""
    if os.environ.get("CONTAINERS_CONF"):
        return {}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-mlops"
    cache.mkdir(parents=True, exist_ok=True)
    conf = cache / "containers.conf"
    text = podman_conf()
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return {"CONTAINERS_CONF": str(conf)}


def detect() -> Engine:
    """Docker when its daemon answers (`docker info`), else podman when it answers."""
    docker_why = "docker: not installed"
    if shutil.which("docker"):
        try:
            info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            info = subprocess.CompletedProcess(["docker"], 1, "", "docker info timed out")
        if info.returncode == 0:
            return Engine("docker", {"DOCKER_BUILDKIT": "1"}, "docker: the daemon answers")
        docker_why = f"docker: no working daemon ({last_line(info)})"
    if shutil.which("podman"):
        podman = Engine("podman", podman_env(), f"{docker_why}; podman answers")
        info = podman.run("info", timeout=60)
        if info.returncode != 0:
            raise EngineError(
                f"podman does not work here ({last_line(info)}){settings_hint(podman)}"
            )
        return podman
    raise EngineError(
        f"no container engine: {docker_why}, podman: not installed "
        "(install Docker, or podman + runc: make system-deps under CI=true)"
    )


def check_runs(engine: Engine, image: str) -> None:
    """Start one container; a refusal names the settings to look at."""
    proc = engine.run("run", "--rm", "--network", "none", image, "true", timeout=120)
    if proc.returncode != 0:
        hint = settings_hint(engine) if engine.name == "podman" else ""
        raise EngineError(f"{engine.name} refuses to run a container ({last_line(proc)}){hint}")


def settings_hint(podman: Engine) -> str:
    conf = podman.env.get("CONTAINERS_CONF") or os.environ.get("CONTAINERS_CONF")
    return f": check runtime, cgroup_manager and default_ulimits in {conf or 'containers.conf'}"


# ---- the bases: official, else local stand-ins -------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt uses here (its sources), else Debian's own."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", path.read_text(), re.MULTILINE)
        if found:
            return found[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        found = re.search(r"^deb\s+(\S+/debian)\s+\S+", listing.read_text(), re.MULTILINE)
        if found:
            return found[1]
    return "http://deb.debian.org/debian"


def _import(engine: Engine, rootfs: Path, name: str, changes: Sequence[str]) -> None:
    tarball = rootfs.parent / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    flags = [f"--change={c}" for c in changes]
    engine.run("import", *flags, str(tarball), name, timeout=600, check=True)


def python_stand_in(engine: Engine, name: str, work: Path) -> None:
    """Debian bookworm (minbase) + Debian's python3.11, with `python` on PATH as in python:*."""
    if os.geteuid() != 0:
        raise EngineError(f"{name}: debootstrap needs root (sudo make base-images)")
    if not shutil.which("debootstrap"):
        raise EngineError(f"{name}: debootstrap is not installed (apt-get install debootstrap)")
    rootfs = work / "rootfs"
    boot = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3.11,ca-certificates",
         DEBIAN_SUITE, str(rootfs), debian_mirror()],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if boot.returncode != 0:
        raise EngineError(f"{name}: debootstrap failed: {last_line(boot)}")
    for link in ("python", "python3"):
        (rootfs / "usr/local/bin" / link).symlink_to("/usr/bin/python3.11")
    for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    _import(engine, rootfs, name, [f"ENV {path}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'])


def uv_stand_in(engine: Engine, name: str, work: Path) -> None:
    """/uv and /uvx from uv's PyPI wheel (installed by uv itself), the layout of
    ghcr.io/astral-sh/uv."""
    version = name.rsplit(":", 1)[1]
    uv = [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]
    wheel = work / "wheel"
    got = subprocess.run(
        [*uv, "pip", "install", "--quiet", "--no-deps", "--target", str(wheel), f"uv=={version}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if got.returncode != 0 or not (wheel / "bin" / "uv").is_file():
        raise EngineError(f"{name}: uv {version} from PyPI: {last_line(got)}")
    rootfs = work / "rootfs"
    rootfs.mkdir()
    for binary in ("uv", "uvx"):
        shutil.copy2(wheel / "bin" / binary, rootfs / binary)
        (rootfs / binary).chmod(0o755)
    _import(engine, rootfs, name, ['CMD ["/uv"]'])


STAND_INS: dict[str, tuple[str, str, Callable[[Engine, str, Path], None]]] = {
    # build argument -> (stand-in name, its tag ("" = the official one's), how to build it)
    "PYTHON_IMAGE": (f"{STAND_IN}/python", f"3.11-{DEBIAN_SUITE}", python_stand_in),
    "UV_IMAGE": (f"{STAND_IN}/uv", "", uv_stand_in),
}


def stand_in_name(arg: str, official: str) -> str:
    """localhost/churn-stand-in/uv:0.13.9 for ghcr.io/astral-sh/uv:0.13.9."""
    name, tag, _ = STAND_INS[arg]
    return f"{name}:{tag or official.rsplit(':', 1)[1]}"


def pullable(engine: Engine, image: str) -> bool:
    if engine.has_image(image):
        return True
    try:
        return engine.run("pull", "--quiet", image, timeout=PULL_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_images(engine: Engine, rebuild: bool = False) -> dict[str, str]:
    """Build argument -> the base to use: the official image where it can be pulled, else its
    stand-in (built once, kept in the engine's store). Says which in one line."""
    chosen: dict[str, str] = {}
    for arg, official in dockerfile_bases().items():
        if arg not in STAND_INS:
            raise EngineError(f"Dockerfile: no stand-in known for {arg}={official}")
        if not rebuild and pullable(engine, official):
            chosen[arg] = official
            continue
        name = stand_in_name(arg, official)
        if rebuild or not engine.has_image(name):
            with tempfile.TemporaryDirectory(prefix="churn-base-") as work:
                STAND_INS[arg][2](engine, name, Path(work))
        chosen[arg] = name
    stand_ins = [f"{a}={v}" for a, v in chosen.items() if v.startswith(STAND_IN)]
    if stand_ins:
        print(
            f"bases: local stand-ins (the official images cannot be pulled): {' '.join(stand_ins)}"
        )
    else:
        print("bases: the official images")
    return chosen


# ---- the images ------------------------------------------------------------------------------


def build(
    engine: Engine,
    target: str,
    tag: str,
    bases: dict[str, str],
    args: dict[str, str] | None = None,
    context: Path = ROOT,
    network: str | None = None,
) -> float:
    """One target of the Dockerfile, tagged; returns the seconds it took."""
    for arg, image in bases.items():
        if not engine.has_image(image):
            raise EngineError(
                f"base {arg}={image} is not in {engine.name}'s store and was not pulled: "
                "make base-images pulls the official bases or builds local stand-ins"
            )
    flags = ["--target", target, "--tag", tag, "--file", str(context / "Dockerfile")]
    for key, value in {**bases, **(args or {})}.items():
        flags += ["--build-arg", f"{key}={value}"]
    bundle = os.environ.get("SSL_CERT_FILE")
    if bundle and Path(bundle).is_file():
        flags += ["--secret", f"id=ca_bundle,src={bundle}"]
        flags += ["--build-arg", "SSL_CERT_FILE=/run/secrets/ca_bundle"]
    if network:
        flags += ["--network", network]
    if engine.name == "podman":
        flags += ["--format", "docker"]  # OCI images drop HEALTHCHECK; compose relies on it
    started = time.monotonic()
    proc = engine.run("build", *flags, str(context), timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise EngineError(f"{engine.name} build --target {target}: {last_line(proc)}")
    return time.monotonic() - started


def images(engine: Engine, bases: dict[str, str], baked: dict[str, str] | None = None) -> None:
    """Every target compose.yaml names, then `baked` when a version and its source are given."""
    targets = dict(compose_images())
    if baked:
        targets["baked"] = f"churn-mlops/api:v{baked['MODEL_VERSION']}"
    for target, tag in targets.items():
        extra = baked if target == "baked" else None
        seconds = build(engine, target, tag, bases, extra, network="host" if extra else None)
        print(f"built {tag} (target {target}) in {seconds:.0f} s")
    if not baked:
        print("baked: not built (give MODEL_VERSION and SOURCE_TRACKING_URI)")


# ---- the compose stack -------------------------------------------------------------------------


@contextlib.contextmanager
def compose(engine: Engine, work: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of Docker Compose v2 for this engine: `docker compose` with Docker;
    with podman, the dev tools' `docker-compose` against podman's Docker-compatible API, served
    on a socket in `work` for as long as the block runs. (podman-compose 1.6 cannot bring up this
    compose.yaml: it fails on a `depends_on` that names a service of an inactive profile.)"""
    if engine.name == "docker":
        yield ["docker", "compose"], engine.environ()
        return
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.exists():
        raise EngineError("docker-compose (Compose v2) is not installed: make setup-dev")
    socket_path = work / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        env=engine.environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not socket_path.exists():
            raise EngineError("podman system service did not open its socket within 30 s")
        yield [str(binary)], {**engine.environ(), "DOCKER_HOST": f"unix://{socket_path}"}
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=15)


def published_ports(env: dict[str, str], path: Path = COMPOSE) -> dict[str, tuple[int, str]]:
    """Service -> (the 127.0.0.1 port compose.yaml publishes it on, with `env`'s overrides, and
    the variable that sets it)."""
    services = yaml.safe_load(path.read_text())["services"]
    ports: dict[str, tuple[int, str]] = {}
    for name, service in services.items():
        for spec in service.get("ports", []):
            variable = re.search(r"\$\{(\w+)", str(spec))
            text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], str(spec))
            ports[name] = (int(text.split(":")[-2]), variable[1] if variable else "")
    return ports


def check_ports_free(env: dict[str, str], services: Sequence[str]) -> None:
    """A port in use fails here, in one line, rather than halfway through `up`."""
    for name, (port, variable) in published_ports(env).items():
        if name not in services:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # only a listener counts
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                fix = f", or set {variable}" if variable else ""
                raise EngineError(
                    f"port 127.0.0.1:{port} ({name}) is in use: stop what listens there{fix}"
                ) from None


# ---- the command -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("engine", help="say which engine builds and runs here, and why")
    bases = sub.add_parser("base-images", help="the official bases, or local stand-ins")
    bases.add_argument("--rebuild", action="store_true", help="rebuild the stand-ins")
    imgs = sub.add_parser("images", help="base-images, then every target")
    imgs.add_argument("--model-version", help="also build `baked` with this registry version")
    imgs.add_argument("--source-tracking-uri", help="the registry `baked` copies it from")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "images" and bool(args.model_version) != bool(args.source_tracking_uri):
        print(f"{PROG}: --model-version and --source-tracking-uri go together", file=sys.stderr)
        return USAGE
    try:
        engine = detect()
        print(f"engine: {engine.name} ({engine.why})")
        if args.command == "engine":
            return 0
        chosen = base_images(engine, rebuild=getattr(args, "rebuild", False))
        check_runs(engine, chosen["PYTHON_IMAGE"])
        if args.command == "images":
            baked = None
            if args.model_version:
                baked = {"MODEL_VERSION": args.model_version,
                         "SOURCE_TRACKING_URI": args.source_tracking_uri}  # fmt: skip
            images(engine, chosen, baked)
    except ChurnError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
