"""Managed toolchain environments: one virtual environment per vendor toolchain, never edgekit's own.

A vendor stack with pins that clash with edgekit's (RKNN-Toolkit2 wants onnx <= 1.18, protobuf < 7,
setuptools < 81) is installed into `<root>/<name>`, where root is `--path`, else `$EDGEKIT_TOOLCHAINS_DIR`,
else `platformdirs.user_data_dir("edgekit")/toolchains`. The install:

- runs the spec's pip steps in order, with `<python> -m pip` of the new environment only;
- is atomic: it builds in a temp dir beside the destination and renames it into place; the state file
  `edgekit-toolchain.json` (steps, timings, `pip freeze`) is written last, so its presence means complete;
- is idempotent and safe with concurrent runs: a lock file serializes installs of one name, and an
  environment whose state matches the current spec is kept as it is.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError, ToolchainMissingError

STATE_FILE = "edgekit-toolchain.json"
STATE_SCHEMA = "edgekit.toolchain"
STATE_VERSION = 1
ENV_VAR = "EDGEKIT_TOOLCHAINS_DIR"


@dataclass(frozen=True)
class ToolchainSpec:
    """What one managed toolchain installs, in which order, and what must be true afterwards."""

    name: str
    description: str
    steps: tuple[tuple[str, ...], ...]  # pip install arguments, run in order
    pins: dict[str, str]  # distribution -> exact version (or specifier) that doctor checks
    imports: tuple[str, ...]  # modules that must import
    worker: str = ""  # worker script beside this file
    notes: tuple[str, ...] = ()

    @property
    def spec_hash(self) -> str:
        text = json.dumps({"steps": self.steps, "pins": self.pins}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def worker_path(self) -> Path:
        return Path(__file__).with_name(self.worker)


# Order from shared/notes/packages-2026-11-21.md: deps first, the wheel with --no-deps (its declared
# pins say torch <= 2.4 and numpy <= 1.26, which are wrong: torch 2.13 and numpy 2.4 work), then the
# pinned torch (never unpinned: that would pull GBs of CUDA), then setuptools < 81 (pkg_resources).
RKNN = ToolchainSpec(
    name="rknn",
    description="Rockchip RKNN-Toolkit2 2.5.0 (RK3588/RK3566/RK3568/RV1106 NPUs, x86 simulator)",
    steps=(
        ("numpy>=1.26,<2.5", "onnx==1.18.0", "protobuf==4.25.4", "onnxruntime>=1.17", "psutil>=5.9",
         "ruamel.yaml>=0.17.21", "scipy>=1.9.3", "tqdm>=4.64.1", "opencv-python-headless>=4.5.5.64",
         "fast-histogram>=0.11"),
        ("--no-deps", "rknn-toolkit2==2.5.0"),
        ("torch==2.13.0",),
        ("setuptools<81",),
    ),
    pins={"rknn-toolkit2": "2.5.0", "onnx": "1.18.0", "protobuf": "4.25.4", "torch": "2.13.0"},
    imports=("numpy", "onnx", "cv2", "rknn.api"),
    worker="rknn_worker.py",
    notes=("opencv-python-headless stands in for the declared opencv-python (no libGL needed)",),
)

TOOLCHAINS: dict[str, ToolchainSpec] = {"rknn": RKNN}


def get_spec(name: str) -> ToolchainSpec:
    if name not in TOOLCHAINS:
        raise BadInputError(f"unknown toolchain {name!r}", path="NAME", hint=f"known: {', '.join(TOOLCHAINS)}")
    return TOOLCHAINS[name]


def toolchains_root(path: str | Path | None = None) -> Path:
    """`--path`, else $EDGEKIT_TOOLCHAINS_DIR, else the user data dir."""
    if path:
        return Path(path).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("edgekit")) / "toolchains"


def install_command(name: str, path: str | Path | None = None) -> str:
    """The exact command that installs a toolchain (shown by every 'toolchain missing' error)."""
    return f"edgekit toolchain install {name}" + (f" --path {path}" if path else "")


def _python_in(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@dataclass
class EnvState:
    """An installed environment, as recorded in its state file."""

    name: str
    path: Path
    python: Path
    spec_hash: str
    python_version: str = ""
    created_at: str = ""
    install_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)  # from pip freeze
    freeze: list[str] = field(default_factory=list)

    @property
    def current(self) -> bool:
        """Installed from the spec this edgekit carries (else: reinstall to update)."""
        spec = TOOLCHAINS.get(self.name)
        return spec is not None and spec.spec_hash == self.spec_hash

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA, "schema_version": STATE_VERSION, "name": self.name, "path": str(self.path),
            "python": str(self.python), "spec_hash": self.spec_hash, "python_version": self.python_version,
            "created_at": self.created_at, "install_seconds": self.install_seconds,
            "step_seconds": self.step_seconds, "steps": self.steps, "packages": self.packages,
            "freeze": self.freeze,
        }

    @classmethod
    def read(cls, env_dir: Path) -> EnvState | None:
        """The state of a complete environment, None when absent or unreadable (= not installed)."""
        try:
            data = json.loads((env_dir / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
            return None
        return cls(
            name=str(data.get("name", env_dir.name)), path=env_dir, python=_python_in(env_dir),
            spec_hash=str(data.get("spec_hash", "")), python_version=str(data.get("python_version", "")),
            created_at=str(data.get("created_at", "")), install_seconds=float(data.get("install_seconds", 0.0)),
            step_seconds=list(data.get("step_seconds", [])), steps=list(data.get("steps", [])),
            packages=dict(data.get("packages", {})), freeze=list(data.get("freeze", [])),
        )


def find_env(name: str, path: str | Path | None = None) -> EnvState | None:
    """The installed environment for `name`, or None."""
    get_spec(name)
    env_dir = toolchains_root(path) / name
    state = EnvState.read(env_dir)
    if state is None or not state.python.exists():
        return None
    return state


def require_env(name: str, path: str | Path | None = None) -> EnvState:
    """The installed environment, or ToolchainMissingError (exit 4) naming the install command."""
    state = find_env(name, path)
    if state is None:
        root = toolchains_root(path)
        raise ToolchainMissingError(
            f"the {name} toolchain environment is not installed", path=root / name,
            hint=f"run `{install_command(name, path)}` (a separate environment; edgekit's own is not touched)")
    return state


@contextlib.contextmanager
def _lock(root: Path, name: str, timeout: float = 1800.0) -> Iterator[None]:
    """An exclusive lock per toolchain name, so concurrent installs/removals never collide."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / f".{name}.lock", "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise BadInputError(f"cannot create the toolchain folder ({exc.strerror or type(exc).__name__})", path=root,
                            hint="pass --path DIR (or set EDGEKIT_TOOLCHAINS_DIR) to a writable folder") from None
    with handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ToolchainMissingError(f"another edgekit is installing {name} (lock held)",
                                                path=root / f".{name}.lock", hint="wait for it, then retry") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Callable[[str], None] | None, *, cwd: Path | None = None) -> str:
    if log:
        log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        first = next((ln for ln in tail.splitlines() if "ERROR" in ln), tail.splitlines()[-1] if tail else "")
        raise ToolchainMissingError(f"`{' '.join(cmd[2:6])} ...` failed: {first}",
                                    hint="check network access to the package index; full output above"
                                    if log else "check network access to the package index")
    return proc.stdout


def _parse_freeze(lines: list[str]) -> dict[str, str]:
    packages = {}
    for line in lines:
        if "==" in line:
            dist, _, version = line.partition("==")
            packages[dist.strip().lower()] = version.strip()
        elif " @ " in line:
            packages[line.split(" @ ")[0].strip().lower()] = line.split(" @ ")[1].strip()
    return packages


def install(
    name: str,
    *,
    path: str | Path | None = None,
    force: bool = False,
    python: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[EnvState, bool]:
    """Install (or keep) a toolchain environment. Returns (state, installed_now)."""
    spec = get_spec(name)
    root = toolchains_root(path)
    dest = root / name
    base_python = str(python or sys.executable)
    with _lock(root, name):
        existing = EnvState.read(dest)
        if existing and existing.spec_hash == spec.spec_hash and existing.python.exists() and not force:
            return existing, False
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
        try:
            _run([base_python, "-m", "venv", str(tmp)], log)
            env_python = _python_in(tmp)
            step_seconds = [round(time.perf_counter() - start, 2)]
            for step in spec.steps:
                t0 = time.perf_counter()
                _run([str(env_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                      "--progress-bar", "off", "--no-compile", *step], log)
                step_seconds.append(round(time.perf_counter() - t0, 2))
            freeze = _run([str(env_python), "-m", "pip", "freeze", "--all"], None).strip().splitlines()
            version = _run([str(env_python), "-c", "import sys; print(sys.version.split()[0])"], None).strip()
            state = EnvState(
                name=name, path=dest, python=_python_in(dest), spec_hash=spec.spec_hash, python_version=version,
                created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                install_seconds=round(time.perf_counter() - start, 2), step_seconds=step_seconds,
                steps=[["venv"], *[list(s) for s in spec.steps]], packages=_parse_freeze(freeze), freeze=freeze,
            )
            (tmp / STATE_FILE).write_text(json.dumps(state.to_json(), indent=2) + "\n")
            if dest.exists():
                old = root / f".{name}.old-{os.getpid()}"
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
            _fix_shebangs_after_move(dest, tmp)
            return state, True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _fix_shebangs_after_move(dest: Path, old: Path) -> None:
    """Console scripts name the temp dir's python; point them at the final one (the venv itself moves fine)."""
    bindir = dest / "bin"
    if not bindir.is_dir():
        return
    old_text, new_text = str(old).encode(), str(dest).encode()
    for script in bindir.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with contextlib.suppress(OSError):
            data = script.read_bytes()
            if old_text in data:
                script.write_bytes(data.replace(old_text, new_text))


def list_envs(path: str | Path | None = None) -> list[tuple[str, EnvState | None]]:
    """Every known toolchain with its installed state (None = not installed)."""
    return [(name, find_env(name, path)) for name in TOOLCHAINS]


def remove(name: str, *, path: str | Path | None = None) -> bool:
    """Delete an installed environment. Returns False when there was none."""
    get_spec(name)
    root = toolchains_root(path)
    dest = root / name
    if not dest.exists():
        return False
    with _lock(root, name):
        trash = root / f".{name}.removing-{os.getpid()}"
        os.replace(dest, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return True


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class DoctorReport:
    name: str
    path: Path
    checks: list[DoctorCheck] = field(default_factory=list)
    hello: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "ok": self.ok,
                "checks": [c.to_json() for c in self.checks], "worker": self.hello}


_PROBE = """
import importlib, json, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "imports": {}, "versions": {}}
for mod in sys.argv[2].split(","):
    try:
        importlib.import_module(mod)
        out["imports"][mod] = "ok"
    except BaseException as exc:
        out["imports"][mod] = f"{type(exc).__name__}: {exc}"[:300]
for dist in sys.argv[1].split(","):
    try:
        out["versions"][dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        out["versions"][dist] = None
sys.stdout.flush()
print("@@probe@@" + json.dumps(out))
"""


def _version_matches(found: str | None, wanted: str) -> bool:
    if found is None:
        return False
    return found == wanted or found.split("+")[0] == wanted


def doctor(name: str, *, path: str | Path | None = None, handshake: bool = True) -> DoctorReport:
    """Check an environment: present, python runs, packages import, pinned versions, worker handshake."""
    spec = get_spec(name)
    dest = toolchains_root(path) / name
    report = DoctorReport(name, dest)
    state = EnvState.read(dest)
    if state is None:
        report.checks.append(DoctorCheck("installed", False, f"no complete environment at {dest}: run "
                                                             f"`{install_command(name, path)}`"))
        return report
    report.checks.append(DoctorCheck("installed", True, f"{dest} (created {state.created_at}, "
                                                        f"{state.install_seconds:.0f} s)"))
    report.checks.append(DoctorCheck("spec", state.current, "matches this edgekit" if state.current else
                                     f"installed from an older spec: run `{install_command(name, path)} --force`"))
    if not state.python.exists():
        report.checks.append(DoctorCheck("python", False, f"{state.python} is missing"))
        return report
    try:
        proc = subprocess.run([str(state.python), "-c", _PROBE, ",".join(spec.pins), ",".join(spec.imports)],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.checks.append(DoctorCheck("python", False, f"{state.python} does not run ({exc})"))
        return report
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@probe@@")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        report.checks.append(DoctorCheck("python", False, f"{state.python} exited {proc.returncode}: {tail}"))
        return report
    probe = json.loads(line[len("@@probe@@"):])
    report.checks.append(DoctorCheck("python", True, f"{state.python} (Python {probe['python']})"))
    for module, result in probe["imports"].items():
        report.checks.append(DoctorCheck(f"import {module}", result == "ok", result))
    for dist, wanted in spec.pins.items():
        found = probe["versions"].get(dist)
        report.checks.append(DoctorCheck(f"version {dist}", _version_matches(found, wanted),
                                         f"{found} (pinned {wanted})" if found else f"not installed (pinned {wanted})"))
    if handshake and spec.worker:
        from edgekit.toolchains.worker_client import WorkerClient

        try:
            with WorkerClient(state.python, spec.worker_path) as client:
                report.hello = client.hello
                report.checks.append(DoctorCheck("worker handshake", True,
                                                 f"{client.hello.get('protocol')} pid {client.hello.get('pid')}"))
        except Exception as exc:  # any failure is a finding, not a crash of doctor
            report.checks.append(DoctorCheck("worker handshake", False, str(exc)))
    return report
