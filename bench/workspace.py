"""Fresh `git clone` against Honk's warm workspace creation, on a large synthetic repository.

    .venv/bin/python bench/workspace.py [--files 20000] [--commits 2000] [--runs 5]

The repository is built once with `git fast-import` and cached under `.honk/bench/`, keyed by
its parameters. One run then measures, alternately (so disk noise hits both alike), `runs`
fresh `git clone file://...` with checkout and `runs` `Workspaces.ensure` calls for new
request ids with the mirror cache and the workspace pool already warm; each workspace is
removed afterwards (untimed), which returns it to the pool for the next one. Prints JSON:

    {"files": ..., "commits": ..., "fresh_clone_median_s": ..., "warm_workspace_median_s": ...,
     "ratio": ..., "runs": ...}
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from honk.config.settings import Settings
from honk.workflows.contract import WorkspaceRef
from honk.workspace import Workspaces

FORMAT_VERSION = 1  # bump when the generated content changes, to rebuild cached repositories
FILES_PER_DIR = 100
CHANGES_PER_COMMIT = 5
FILLER = b"The quick brown fox jumps over the lazy dog. " * 5  # ~225 bytes a file


def _path(index: int) -> bytes:
    # ~200 directories of 100 files, two levels deep, like a real source tree.
    return b"src/m%03d/d%02d/file%06d.txt" % (
        index // (FILES_PER_DIR * 10),
        (index // FILES_PER_DIR) % 10,
        index,
    )


def _content(index: int, version: int) -> bytes:
    return b"file %d, version %d\n%s\n" % (index, version, FILLER)


def _data(chunk: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(chunk), chunk)


def build_repo(cache_dir: Path, files: int, commits: int) -> Path:
    """A bare repository with `files` files and `commits` commits on `main`, built once.

    One `git fast-import` stream: the first commit adds every file, each later one changes
    a few (the one-commit-at-a-time way would take many minutes)."""
    if files < 1 or commits < 1:
        raise ValueError("files and commits must be at least 1")
    repo = cache_dir / f"repo-f{files}-c{commits}-v{FORMAT_VERSION}.git"
    if (repo / "refs" / "heads" / "main").exists() or (repo / "packed-refs").exists():
        return repo
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = repo.with_name(repo.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["git", "init", "--quiet", "--bare", str(tmp)], check=True)
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=tmp, check=True)
    importer = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=tmp, stdin=subprocess.PIPE)
    assert importer.stdin is not None
    write = importer.stdin.write
    rng = random.Random(20_000)
    when = 1_600_000_000
    for number in range(commits):
        write(b"commit refs/heads/main\n")
        write(b"committer Bench <bench@example.com> %d +0000\n" % (when + number * 600))
        write(_data(b"commit %d" % number))
        changed = range(files) if number == 0 else (rng.randrange(files) for _ in range(CHANGES_PER_COMMIT))
        for index in changed:
            write(b"M 100644 inline " + _path(index) + b"\n" + _data(_content(index, number)))
        write(b"\n")
    importer.stdin.close()
    if importer.wait() != 0:
        raise RuntimeError("git fast-import failed")
    tmp.rename(repo)
    return repo


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(repo: Path, work_dir: Path, runs: int) -> tuple[list[float], list[float]]:
    """(fresh clone seconds, warm workspace seconds), `runs` of each, alternating."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    url = repo.resolve().as_uri()
    settings = Settings(data_dir=work_dir / "data", workspace_pool_size=2)
    workspaces = Workspaces(settings)

    def ref(name: str) -> WorkspaceRef:
        return WorkspaceRef(request_id=name, repo="bench", remote=url, base_branch="main", work_branch=f"honk/{name}")

    def clone(dest: Path) -> None:
        subprocess.run(["git", "clone", "--quiet", url, str(dest)], check=True)

    # Warm both sides alike: the repository's pack in the page cache, the mirror cache
    # fetched and one workspace parked in the pool.
    clone(work_dir / "warm-clone")
    shutil.rmtree(work_dir / "warm-clone")
    workspaces.ensure(ref("warm-up"))
    workspaces.remove(ref("warm-up"), delete_remote_branch=False)

    fresh, warm = [], []
    for run in range(runs):
        dest = work_dir / f"clone-{run}"
        fresh.append(_timed(lambda dest=dest: clone(dest)))
        shutil.rmtree(dest)
        request = ref(f"bench-{run}")
        warm.append(_timed(lambda request=request: workspaces.ensure(request)))
        workspaces.remove(request, delete_remote_branch=False)
    shutil.rmtree(work_dir, ignore_errors=True)
    return fresh, warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--commits", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".honk" / "bench")
    args = parser.parse_args(argv)

    repo = build_repo(args.cache_dir, args.files, args.commits)
    fresh, warm = measure(repo, args.cache_dir / "run", args.runs)
    fresh_median, warm_median = statistics.median(fresh), statistics.median(warm)
    print(
        json.dumps(
            {
                "files": args.files,
                "commits": args.commits,
                "fresh_clone_median_s": round(fresh_median, 3),
                "warm_workspace_median_s": round(warm_median, 3),
                "ratio": round(fresh_median / warm_median, 1),
                "runs": args.runs,
                "fresh_clone_s": [round(t, 3) for t in fresh],
                "warm_workspace_s": [round(t, 3) for t in warm],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
