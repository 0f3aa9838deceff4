"""A repository without build targets is still reviewable: the request reaches approval with
a summary page (published like install pages), and the approval message and the status show
the diff stat, the changed files and the work branch. Real dev server, real activities, the
scripted model, a git remote on disk; the repository names a file with HTML in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from honkstack import Stack

from honk.workflows.contract import Stage

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

HOSTILE = "notes/<img src=x onerror=alert(1)>.txt"
SCRIPT = {
    "replies": [
        {
            "when": "greeting",
            "summary": "Greeting changed; a note added.",
            "edits": [
                {"path": "res/values/strings.xml", "replace": "Hello from Honk!", "with": "Hello from the bus!"},
                {"path": HOSTILE, "write": "a note\n"},
            ],
        }
    ]
}


def checks_only(app: Path) -> None:
    """The sample app's checks, without its `[[build]]` target."""
    config = (app / ".honk.toml").read_text()
    (app / ".honk.toml").write_text(config.split("[[build]]")[0])


async def test_a_change_with_nothing_to_build_reaches_approval_with_its_diff(dev_env, tmp_path, task_queue):
    stack = Stack(dev_env, tmp_path / "stack", task_queue, script=SCRIPT, edit_app=checks_only)
    stack.start_worker()
    try:
        handle = await stack.request("Change the greeting")
        waiting = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL, timeout=180)

        # The status query: files, diff stat and a summary page instead of an install page.
        assert waiting.changed_files == sorted(["res/values/strings.xml", HOSTILE])
        assert waiting.diff_stat and "res/values/strings.xml" in waiting.diff_stat
        assert "2 files changed" in waiting.diff_stat
        assert waiting.links.install_page is None and waiting.links.summary_page
        assert waiting.links.compare is None, "a remote on disk has no web page to compare on"

        # The approval request (log notifier, the record of what was said) carries the same.
        lines = (stack.settings.data_dir / "notifications" / f"{handle.id}.jsonl").read_text().splitlines()
        approval = next(json.loads(x) for x in lines if json.loads(x)["event"] == "needs_approval")
        assert approval["review"]["changed_files"] == waiting.changed_files
        assert "2 files changed" in approval["review"]["diff_stat"]
        assert approval["links"]["summary_page"] == waiting.links.summary_page

        # The summary page: the change for review, the file name shown as text, never as HTML.
        page = Path(urlparse(waiting.links.summary_page).path).read_text()
        assert "Change summary" in page
        assert "res/values/strings.xml" in page and 'id="changed-files"' in page
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert f"<code>{waiting.links.work_branch}</code>" in page
        assert "Checks passed" in page and "Install on" not in page

        await handle.signal("cancel", {"by": "bob"})
    finally:
        await stack.close()
