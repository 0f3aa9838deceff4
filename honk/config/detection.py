"""Checks and their environment, guessed from a repository that has no `.honk.toml`.

Each guess is an ordinary configuration (the same cached environment, the same checks), so
`snippet()` can print it as the `.honk.toml` the user would commit to make it explicit.
The project's own code is never installed into the environment: the environment is shared
by every request of the repository, so Python finds the workspace's code via PYTHONPATH.
"""

from __future__ import annotations

import glob
import json
import re
import tomllib
from pathlib import Path

from honk.config.repository import CheckSpec, EnvironmentSpec, RepoConfig

PY_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini")
PY_INPUTS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "requirements*.txt", "requirements/*.txt")
# Extras and requirement files that carry what the tests need.
TEST_EXTRAS = ("test", "tests", "testing", "dev")
_TEST_FILE = re.compile(r"(test|dev)", re.IGNORECASE)
NODE_LOCKS = {
    "package-lock.json": "npm ci",
    "npm-shrinkwrap.json": "npm ci",
    "yarn.lock": "yarn install --frozen-lockfile",
    "pnpm-lock.yaml": "pnpm install --frozen-lockfile",
}


def detect_repo_config(root: Path) -> RepoConfig:
    """Guess checks (and the environment they need) from the repository's content."""
    for guess in (_node, _python, _gradle, _make):
        config = guess(root)
        if config is not None:
            return config
    return RepoConfig(detected=True)


def _node(root: Path) -> RepoConfig | None:
    if not (root / "package.json").is_file():
        return None
    lock = next((name for name in NODE_LOCKS if (root / name).is_file()), None)
    install = NODE_LOCKS[lock] if lock else "npm install --no-audit --no-fund"
    environment = EnvironmentSpec(
        setup=[install],
        inputs=["package.json", *([lock] if lock else []), ".npmrc"],
        paths=["node_modules/.bin"],
        workspace_mounts=["node_modules"],
    )
    runner = "yarn" if lock == "yarn.lock" else "pnpm" if lock == "pnpm-lock.yaml" else "npm"
    checks = [CheckSpec(name="test", run=[runner, "test"])] if _has_test_script(root) else []
    return RepoConfig(checks=checks, environment=environment, detected=True)


def _has_test_script(root: Path) -> bool:
    try:
        scripts = json.loads((root / "package.json").read_text(encoding="utf-8")).get("scripts") or {}
    except (ValueError, OSError, AttributeError):
        return False
    return isinstance(scripts, dict) and bool(scripts.get("test"))


def _python(root: Path) -> RepoConfig | None:
    requirements = _test_requirement_files(root)
    if not any((root / m).is_file() for m in PY_MARKERS) and not requirements and not (root / "tests").is_dir():
        return None
    packages = _pyproject_requirements(root)
    if not any(_name(p) == "pytest" for p in packages):
        packages.append("pytest")
    install = ["venv/bin/pip", "install", "--quiet", "--disable-pip-version-check"]
    setup: list[str | list[str]] = [["python3", "-m", "venv", "venv"]]
    setup.append([*install, *[arg for f in requirements for arg in ("-r", f)], *packages])
    code = "${HONK_WORKSPACE}/src" if (root / "src").is_dir() else "${HONK_WORKSPACE}"
    environment = EnvironmentSpec(
        setup=setup,
        inputs=list(PY_INPUTS),
        paths=["venv/bin"],
        env={"PYTHONPATH": code},
    )
    checks = [CheckSpec(name="pytest", run=["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"])]
    return RepoConfig(checks=checks, environment=environment, detected=True)


def _test_requirement_files(root: Path) -> list[str]:
    """`requirements.txt` plus the requirement files named for tests or development."""
    found = []
    for pattern in ("requirements*.txt", "requirements/*.txt"):
        for path in sorted(glob.glob(pattern, root_dir=root)):
            name = Path(path).name
            if name == "requirements.txt" or _TEST_FILE.search(name):
                found.append(path)
    return found


def _pyproject_requirements(root: Path) -> list[str]:
    """[project].dependencies, the test extras and the test dependency groups; never an
    option (a requirement string starting with "-" would be read as one by pip)."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    project = data.get("project") or {}
    wanted: list[object] = list(project.get("dependencies") or [])
    extras = project.get("optional-dependencies") or {}
    groups = data.get("dependency-groups") or {}
    for key in TEST_EXTRAS:
        wanted += list(extras.get(key) or []) if isinstance(extras, dict) else []
        wanted += [g for g in (groups.get(key) or []) if isinstance(g, str)] if isinstance(groups, dict) else []
    return [r.strip() for r in dict.fromkeys(w for w in wanted if isinstance(w, str)) if not r.strip().startswith("-")]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _gradle(root: Path) -> RepoConfig | None:
    if not (root / "gradlew").is_file():
        return None
    checks = [CheckSpec(name="gradle-test", run=["./gradlew", "test", "--console=plain"], timeout_seconds=3600)]
    return RepoConfig(checks=checks, detected=True)


def _make(root: Path) -> RepoConfig | None:
    makefile = root / "Makefile"
    if not makefile.is_file() or not re.search(r"^test:", makefile.read_text(errors="replace"), re.MULTILINE):
        return None
    return RepoConfig(checks=[CheckSpec(name="make-test", run=["make", "test"])], detected=True)


# --------------------------------------------------------------------------- snippet


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def snippet(config: RepoConfig) -> str:
    """The configuration as the `.honk.toml` text that would produce it."""
    lines: list[str] = []
    env = config.environment
    if not env.empty or env.inputs:
        lines.append("[environment]")
        for key in ("setup", "inputs", "paths", "env", "workspace_mounts"):
            value = getattr(env, key)
            if value:
                lines.append(f"{key} = {_toml(value)}")
        if not env.network:
            lines.append("network = false")
        lines.append("")
    for check in config.checks:
        lines += ["[[checks]]", f"name = {_toml(check.name)}", f"run = {_toml(check.run)}"]
        if check.env:
            lines.append(f"env = {_toml(check.env)}")
        lines.append("")
    return "\n".join(lines).strip() + "\n" if lines else "# nothing detected: add [[checks]] by hand\n"
