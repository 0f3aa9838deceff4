"""Protected paths: what the agent may not change, because the approver relies on it.

The team's verifier (`.honk.toml`, the scripts its checks and builds run, CI configuration)
and the agent's own instructions (AGENTS.md, CLAUDE.md) are protected by default;
`.honk.toml` `[protect] paths = [...]` adds more. The agent's tools refuse to change them
unless the request allows it, and a change that touches them anyway is called out to the
approver (`ChecksOutcome.protected_changes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from honk.config.repository import CONFIG_FILE, RepoConfig

DEFAULT_PROTECTED = (
    CONFIG_FILE,
    "AGENTS.md",
    "CLAUDE.md",
    ".github/workflows/**",
    ".github/actions/**",
    ".gitlab-ci.yml",
    ".circleci/**",
    "Jenkinsfile",
    ".buildkite/**",
    ".gitmodules",
)

# Files a tool reads as its program when a check or build runs it.
_TOOL_FILES = {
    "make": ("Makefile", "makefile", "GNUmakefile"),
    "npm": ("package.json",),
    "yarn": ("package.json",),
    "pnpm": ("package.json",),
    "tox": ("tox.ini",),
    "nox": ("noxfile.py",),
    "gradle": ("build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"),
    "./gradlew": ("gradlew", "build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"),
    "fastlane": ("fastlane/Fastfile",),
}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` spans directories, `*` and `?` stay within one; a plain name is an exact path."""
    out = []
    i = 0
    pattern = pattern.strip().lstrip("/").removeprefix("./")
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class ProtectedPaths:
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(_glob_regex(p) for p in self.patterns))

    def __call__(self, path: str) -> bool:
        """True when the repository-relative `path` is protected."""
        clean = path.replace("\\", "/").lstrip("/").removeprefix("./")
        return any(rx.fullmatch(clean) for rx in self._compiled)  # type: ignore[attr-defined]

    def among(self, paths: Iterable[str]) -> list[str]:
        return sorted({p for p in paths if self(p)})


NOTHING_PROTECTED = ProtectedPaths(())


# Programs that run a script named by their first plain argument.
_INTERPRETERS = frozenset(
    {"sh", "bash", "dash", "zsh", "python", "python3", "node", "ruby", "perl", "php", "deno", "bun"}
)


def executed_files(argv: list[str]) -> list[str]:
    """The repository files a command executes: the program itself, and the script an
    interpreter runs (`sh scripts/check.sh`). Data files it merely reads (`test -f x`) and
    modules (`python -m pytest`) are not among them: the agent may have to change those."""
    found = [argv[0]]
    if argv[0].rsplit("/", 1)[-1] in _INTERPRETERS:
        for arg in argv[1:]:
            if arg in ("-m", "-c", "-e"):
                break
            if not arg.startswith("-"):
                found.append(arg)
                break
    return found


def protected_paths(config: RepoConfig, exists: Callable[[str], bool]) -> ProtectedPaths:
    """Defaults, the configured paths, and every repository file a check or build executes
    (`["sh", "scripts/check.sh"]` protects scripts/check.sh; `make test` the Makefile)."""
    patterns = [*DEFAULT_PROTECTED, *config.protect.paths]
    commands = [c.run for c in config.checks] + [b.run for b in config.build if b.run]
    for argv in commands:
        patterns.extend(_TOOL_FILES.get(argv[0], ()))
        for arg in executed_files(argv):
            rel = arg.removeprefix("./")
            if rel and not arg.startswith("/") and ".." not in rel.split("/") and "=" not in rel and exists(rel):
                patterns.append(rel)
    return ProtectedPaths(tuple(dict.fromkeys(patterns)))
