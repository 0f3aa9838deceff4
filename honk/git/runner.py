"""The one hardened git runner Honk uses on the worker.

Every git command runs as an argv (never a shell string) with configuration that keeps
repository-controlled programs from running (hooks, fsmonitor, submodule recursion, foreign
config and attributes files) and an environment that fixes Honk's identity and never
prompts (`honk.workspace.hygiene` makes sure the repository's own `.git` holds nothing
else). Failures come back as `GitError`, with credentials
removed and a verdict on whether a remote failure is permanent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
from git.compat import defenc

from honk import telemetry
from honk.git.credentials import GitCredentials, askpass_env
from honk.redact import redact

HONK_NAME = "Honk"
HONK_EMAIL = "honk@localhost"

# A hung clone/fetch/push would otherwise keep heartbeating forever from the helper thread.
NETWORK_TIMEOUT_S = 15 * 60

# Applied to every git invocation (`-c` beats every config file). The agent and the checks
# write inside the workspace, so nothing there may make git run programs: no hooks, no
# fsmonitor, no attributes file outside the tree, no submodule recursion (an embedded
# repository's own config would apply there), only the transports Honk uses; commits must
# not depend on a signing key. Filter/diff/merge drivers can only be *defined* in config,
# which `honk.workspace.hygiene` verifies before Honk's git touches a work tree again.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.attributesFile=/dev/null",
    "core.untrackedCache=false",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=all",
    "status.submoduleSummary=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.http.allow=always",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
)

# Commands that can produce diffs: external diff and textconv stay off even if a driver
# were defined somehow.
_DIFFING = frozenset({"diff", "log", "show"})

# Commands that never look at a work tree's attributes: they keep the operator's own
# global config (credential helpers, proxies), which the repository cannot write.
_NETWORK_ENV: dict[str, str] = {}
# Everything else reads no config but the repository's (verified) own: system and global
# files could define filter drivers (git-lfs) that tree attributes would then invoke.
_LOCAL_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1"}

# Identity through the environment: it beats any GIT_AUTHOR_* a worker inherited and never
# touches global config. No prompts: a worker has no terminal to answer them.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": HONK_NAME,
    "GIT_AUTHOR_EMAIL": HONK_EMAIL,
    "GIT_COMMITTER_NAME": HONK_NAME,
    "GIT_COMMITTER_EMAIL": HONK_EMAIL,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_EDITOR": "true",
}

# stderr fragments that mean "this remote will not work until someone fixes the request or
# the registry" (as opposed to a network blip, which a retry handles).
_PERMANENT_REMOTE_ERRORS = (
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "does not exist",
    "authentication failed",
    "permission denied",
    "could not read username",
    "unsupported protocol",
    "transport '",  # "transport 'x' not allowed"
)


class GitError(RuntimeError):
    """A git command failed. Retryable; the message and stderr carry no credentials."""

    def __init__(self, command: str, exc: git.GitCommandError) -> None:
        self.command = command
        self.status = exc.status
        # GitPython pre-formats these as "\n  stderr: '...'"; keep only git's own words.
        self.stderr = redact(_text(exc.stderr).removeprefix("\n  stderr: '").removesuffix("'"))
        self.stdout = redact(_text(exc.stdout).removeprefix("\n  stdout: '").removesuffix("'"))
        detail = self.stderr.strip() or self.stdout.strip() or f"exit status {exc.status}"
        super().__init__(f"git {command} failed: {detail}")


def git_failure(command: str, message: str) -> GitError:
    """A GitError for a command whose answer Honk cannot use (as if git had failed)."""
    return GitError(command, git.GitCommandError(["git", command], 128, message.encode(), b""))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def is_permanent_remote_error(exc: GitError) -> bool:
    """True when the remote refused for a reason a retry cannot fix (missing repository,
    bad credentials, forbidden transport); False for what may be a network blip."""
    lowered = exc.stderr.lower()
    return any(fragment in lowered for fragment in _PERMANENT_REMOTE_ERRORS)


@telemetry.traced(
    lambda target, command, *a, **k: f"git {command}",
    attrs=lambda target, command, *a, network=False, **k: {"git.command": command, "network": network},
)
def run_git(
    target: git.Repo | git.Git,
    command: str,
    *args: str,
    network: bool = False,
    strip: bool = True,
    credentials: GitCredentials | None = None,
    stdin: bytes | None = None,
) -> str:
    """Run `git <command> <args...>` as an argv (never a shell) with the safety settings.

    Raises GitError. `network` commands are killed after NETWORK_TIMEOUT_S and may
    authenticate: with `credentials`, else with the worker's HONK_GIT_* variables, else with
    whatever the worker's git has (credential helper, ssh keys).
    """
    cmd = target.git if isinstance(target, git.Repo) else target
    if command in _DIFFING:  # belt and braces: drivers are never defined, never invoked
        args = ("--no-ext-diff", "--no-textconv", *args)
    if not network:
        return _run_local(cmd, command, args, strip, stdin)
    if stdin is not None:
        raise ValueError("network git commands take no input")
    runner = getattr(cmd(c=list(_SAFE_CONFIG)), command.replace("-", "_"))
    env = {**_GIT_ENV, **_NETWORK_ENV, **askpass_env(credentials)}
    try:
        output = runner(
            *args,
            env=env,
            kill_after_timeout=NETWORK_TIMEOUT_S if network else None,
            strip_newline_in_stdout=strip,
        )
    except git.GitCommandError as exc:
        raise GitError(command, exc) from None
    return str(output)


def _run_local(cmd: git.Git, command: str, args: tuple[str, ...], strip: bool, stdin: bytes | None = None) -> str:
    """A local command, run as GitPython would (same argv, environment, decoding and
    errors) without its per-call overhead: a request runs dozens of these."""
    argv = [git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"]
    for setting in _SAFE_CONFIG:
        argv += ["-c", setting]
    argv += [command, *args]
    env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **_GIT_ENV, **_LOCAL_ENV}
    try:
        if stdin is None:
            done = subprocess.run(
                argv, cwd=cmd.working_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
        else:
            done = subprocess.run(argv, cwd=cmd.working_dir, env=env, input=stdin, capture_output=True, check=False)
    except OSError as exc:  # the directory is gone (or git is): a failed git command all the same
        raise GitError(command, git.GitCommandError(argv, 128, str(exc).encode(), b"")) from None
    stdout, stderr = done.stdout, done.stderr.removesuffix(b"\n")
    if strip:
        stdout = stdout.removesuffix(b"\n")
    if done.returncode != 0:
        raise GitError(command, git.GitCommandError(argv, done.returncode, stderr, stdout))
    return stdout.decode(defenc, "surrogateescape")


def rev(repo: git.Repo, name: str) -> str | None:
    """The commit `name` points to, or None when it does not exist."""
    return revs(repo, f"{name}^{{commit}}")[0]


def revs(repo: git.Repo, *names: str) -> list[str | None]:
    """The object each of `names` resolves to (e.g. `refs/heads/x^{commit}`, `HEAD^{tree}`),
    None for each that does not exist: one git process for all of them."""
    asked = [name for name in names if name and "\n" not in name]  # others name nothing
    if not asked:
        return [None] * len(names)
    query = "".join(f"{name}\n" for name in asked).encode()
    out = run_git(repo, "cat-file", "--batch-check=%(objectname)", strip=False, stdin=query)
    found: list[str | None] = []
    # Split where git does: str.splitlines would also split a name at U+2028 & co, which a
    # branch name may hold, and shift every answer after it.
    lines = out.removesuffix("\n").split("\n") if out else []
    for line in lines[: len(asked)]:
        # A missing (or ambiguous) name is echoed back with a verdict; an object id is hex.
        found.append(line if line and " " not in line and all(c in "0123456789abcdef" for c in line) else None)
    if len(found) != len(asked):
        raise git_failure("cat-file", f"expected {len(asked)} answers, got: {out[:200]!r}")
    answers = iter(found)
    return [next(answers) if name and "\n" not in name else None for name in names]


@contextlib.contextmanager
def open_repo(path: Path) -> Iterator[git.Repo]:
    """A Repo for one thread's use; closed afterwards (it keeps cat-file processes)."""
    repo = git.Repo(path)
    try:
        yield repo
    finally:
        repo.close()
