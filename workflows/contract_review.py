"""What an approver reviews besides a build: the change's diff stat, the files it touches and
where to read it (the work branch, or the forge's compare view). Every surface (chat, status,
the Temporal UI card, install and summary pages) shows the same facts with these helpers.

Pure and free of the contract (which imports this module); file names come from a hostile
repository, so each surface escapes them for its own format.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

FILES_KEPT = 200  # a notice or task carries at most this many paths; the count says the rest


class Review(BaseModel):
    model_config = ConfigDict(extra="ignore")

    diff_stat: str | None = Field(None, description="git diff --stat of the change against its base")
    changed_files: list[str] = Field(default_factory=list, description="the first FILES_KEPT paths")
    changed_count: int = Field(0, description="how many paths the change touches in all")
    branch: str | None = None
    compare: str | None = Field(None, description="the forge's compare view (or branch page)")
    checks: str = Field("", description="what the checks said about the reviewed commit")


def review(
    diff_stat: str | None, files: list[str], branch: str | None, compare: str | None, checks: str = ""
) -> Review:
    return Review(
        diff_stat=diff_stat or None,
        changed_files=files[:FILES_KEPT],
        changed_count=len(files),
        branch=branch,
        compare=compare,
        checks=checks,
    )


def first_files(files: list[str], total: int | None = None, limit: int = 10) -> tuple[list[str], int]:
    """The first `limit` paths and how many more there are ("and N more")."""
    shown = files[:limit]
    return shown, max(total or 0, len(files)) - len(shown)


def short_stat(stat: str, limit: int = 2000) -> str:
    """The diff stat within `limit` characters: the first file lines and always git's summary
    line ("N files changed, ..."), which says how big the change is."""
    stat = stat.rstrip()
    if len(stat) <= limit:
        return stat
    lines = stat.splitlines()
    summary, kept, used = lines[-1], [], len(lines[-1]) + 6
    for line in lines[:-1]:
        if used + len(line) + 1 > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join([*kept, " ...", summary])[:limit]


def stat_summary(stat: str | None) -> str:
    """git's last line, e.g. "2 files changed, 5 insertions(+), 1 deletion(-)"."""
    return stat.strip().splitlines()[-1].strip() if stat and stat.strip() else ""


def protected_changes_text(paths: list[str], limit: int = 10) -> str:
    """The plain words every surface (chat, install page, status, Temporal UI) uses."""
    if not paths:
        return ""
    shown = ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
    return f"This change modifies protected files: {shown}."
