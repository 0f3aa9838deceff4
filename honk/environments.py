"""Check environments: a repository's toolchain and dependencies, set up once per key.

`[environment]` setup runs in the sandbox (network only if the repository allows it) in a
directory under the data dir, never in the workspace, so nothing it writes can reach a
commit. The directory is built under a temporary name but mounted, inside the box, at its
final path (virtualenvs and npm bins hard-code it), then renamed into place atomically;
the per-key lock makes concurrent requests wait for one build and then share it. Checks
and builds see the result read-only and offline.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from honk import telemetry
from honk.commands import run_command
from honk.config.repository import EnvironmentSpec, RepoConfig
from honk.config.settings import Settings
from honk.errors import HonkError
from honk.sandbox import Sandbox
from honk.workspace.locks import file_lock
from honk.workspace.paths import safe_name

log = logging.getLogger(__name__)

FORMAT = "1"  # bump when the layout of an environment changes
MAX_INPUT_BYTES = 50 * 1024**2
READY = ".honk-ready"


class EnvironmentProblem(HonkError):
    """Checks cannot run because of their environment, not the code: no agent round can fix
    it, so the request fails at once with what to configure."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="EnvironmentError", retryable=False)


def with_snippet(problem: str, config: RepoConfig) -> str:
    from honk.config.detection import snippet

    origin = "detected (no .honk.toml)" if config.detected else "from .honk.toml"
    return (
        f"{problem}\n\nThis is a problem of the checks' environment, not of the change, so no agent "
        f"attempt was spent on it. The configuration in use ({origin}), to commit as .honk.toml "
        f"and adjust:\n\n{snippet(config)}"
    )


@dataclass(frozen=True)
class PreparedEnvironment:
    spec: EnvironmentSpec
    path: Path | None = None  # None: the repository declares no environment
    key: str = ""
    cache_hit: bool = False

    def variables(self, root: Path) -> dict[str, str]:
        """What a check or build sees on top of the scrubbed base environment."""
        if self.path is None:
            return {}
        here = {"HONK_ENV": str(self.path), "HONK_WORKSPACE": str(root)}
        found = {k: _expand(v, here) for k, v in self.spec.env.items()}
        entries = [str(self.path / p) for p in self.spec.paths]
        worker_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        return {**here, **found, "PATH": os.pathsep.join([*entries, worker_path])}

    def sandbox(self, base: Sandbox, root: Path) -> Sandbox:
        """`base` plus the environment read-only (and its workspace mounts) and no network."""
        if self.path is None:
            return base
        binds = [(self.path, self.path, False)]
        for name in self.spec.workspace_mounts:
            source, target = self.path / name, root / name
            if not source.is_dir() or target.is_symlink():
                continue
            if base.mode == "none":  # no box to mount in: a link (never committed) instead
                if not target.exists():
                    target.symlink_to(source, target_is_directory=True)
                continue
            target.mkdir(parents=True, exist_ok=True)  # the mount point; never committed
            binds.append((source, target, False))
        return dataclasses.replace(base, binds=(*base.binds, *binds))


def _expand(value: str, names: dict[str, str]) -> str:
    for name, replacement in names.items():
        value = value.replace("${" + name + "}", replacement).replace("$" + name, replacement)
    return value


def environment_key(spec: EnvironmentSpec, root: Path) -> str:
    """The inputs' names and contents plus the table itself: any change means a rebuild."""
    digest = hashlib.sha256(f"honk-env {FORMAT}\n{spec.model_dump_json()}\n".encode())
    for pattern in spec.inputs:
        for name in sorted(glob.glob(pattern, root_dir=root)):
            path = root / name
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_INPUT_BYTES:
                digest.update(f"{name}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def prepare_environment(settings: Settings, repo: str, root: Path, config: RepoConfig) -> PreparedEnvironment:
    """The repository's environment for the tree at `root`: from the cache, or built now."""
    spec = config.environment
    if spec.empty:
        return PreparedEnvironment(spec)
    key = environment_key(spec, root)
    home = settings.data_dir / "envs" / safe_name(repo)
    final = home / key
    fields = {"repo": repo, "key": key, "path": str(final)}
    if (final / READY).exists():
        log.info("environment cache hit", extra=fields)
        telemetry.annotate(environment="hit")
        return PreparedEnvironment(spec, final, key, cache_hit=True)
    with file_lock(home / f".{key}.lock", f"environment {key} of {repo}"):
        if (final / READY).exists():  # another request built it while we waited
            log.info("environment cache hit", extra=fields)
            return PreparedEnvironment(spec, final, key, cache_hit=True)
        log.info("environment build started", extra=fields)
        _build(settings, spec, root, final, config)
        log.info("environment built", extra=fields)
        telemetry.annotate(environment="built")
    return PreparedEnvironment(spec, final, key)


def _build(settings: Settings, spec: EnvironmentSpec, root: Path, final: Path, config: RepoConfig) -> None:
    base = Sandbox.from_settings(settings)
    boxed = base.mode != "none"
    if final.exists():  # a build that crashed half-way (no READY marker)
        shutil.rmtree(final)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent)) if boxed else final
    work.mkdir(parents=True, exist_ok=True)
    try:
        for pattern in spec.inputs:  # the setup sees the inputs, not the workspace
            for name in glob.glob(pattern, root_dir=root):
                if (root / name).is_file() and not (root / name).is_symlink():
                    (work / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(root / name, work / name)
        # Inside the box the build directory is shown at its final path.
        sandbox = dataclasses.replace(
            base,
            network=spec.network or base.network,
            binds=((work, final, True),) if boxed else (),
            chdir=final if boxed else None,
        )
        prepared = PreparedEnvironment(spec, final)
        env = prepared.variables(root)
        env.pop("HONK_WORKSPACE")
        logs = settings.data_dir / "envs" / "logs"
        for number, argv in enumerate(spec.argvs(), 1):
            result = run_command(
                argv,
                work,
                timeout_s=spec.timeout_seconds,
                env_extra=env,
                log_path=logs / f"{final.parent.name}-{final.name}-{number}.log",
                tail_limit=2000,
                sandbox=sandbox,
            )
            if not result.ok:
                why = result.error or f"exit code {result.exit_code}"
                hint = "" if spec.network else " (setup has no network: `network = false`)"
                raise EnvironmentProblem(
                    with_snippet(
                        f"Setting up the checks' environment failed{hint}: `{' '.join(argv)}` ({why}):\n"
                        f"{result.output_tail.strip()}",
                        config,
                    )
                )
        (work / READY).write_text(spec.model_dump_json())
        if boxed:
            if final.is_dir() and not any(final.iterdir()):
                final.rmdir()  # the box's mount point
            os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
