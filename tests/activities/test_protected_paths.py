"""The verifier belongs to the team: the agent's tools refuse to change `.honk.toml` and the
scripts the checks run; checks run what the *base branch* configures even when the work
tree's `.honk.toml` says otherwise; a change that touches protected paths anyway (allowed by
the request) is flagged to the approver."""

from __future__ import annotations

import git
import pytest
from anthropic_fake import API_KEY, FakeAnthropic
from repos import make_remote, remote_file

from honk.activities.agent import AgentActivities
from honk.activities.checks import CheckActivities
from honk.config.settings import load_settings
from honk.publish.install_page import install_page
from honk.publish.qr import QrCode
from honk.slack import blocks
from honk.workflows.contract import AgentTask, ChecksTask, Notice, PublishTask, Stage, WorkspaceRef
from honk.workspace import Workspaces

HONK_TOML = '[[checks]]\nname = "unit"\nrun = ["sh", "checks/unit.sh"]\ntimeout_seconds = 60\n'
PASSING_TOML = '[[checks]]\nname = "unit"\nrun = ["true"]\n'
FAILING_CHECK = "#!/bin/sh\necho 'unit: 1 failed' >&2\nexit 1\n"
APP = {".honk.toml": HONK_TOML, "checks/unit.sh": FAILING_CHECK, "app.txt": "v1\n"}


def cheat(summary: str) -> dict:
    """A prompt-injected model: rewrite the verifier so it passes, then claim victory."""
    return {
        "replies": [
            {
                "when": "make it pass",
                "turns": [
                    {
                        "tools": [
                            {"name": "write_file", "input": {"path": ".honk.toml", "content": PASSING_TOML}},
                            {"name": "write_file", "input": {"path": "./checks/unit.sh", "content": "exit 0\n"}},
                            {"name": "delete_file", "input": {"path": "checks/unit.sh"}},
                            {
                                "name": "edit_file",
                                "input": {"path": ".honk.toml", "old_text": "sh", "new_text": "true"},
                            },
                            {"name": "write_file", "input": {"path": "app.txt", "content": "v2\n"}},
                        ]
                    },
                    {"tools": [{"name": "finish", "input": {"summary": summary}}]},
                ],
            }
        ]
    }


@pytest.fixture
def setup(tmp_path):
    fakes = []

    def make(script: dict):
        fake = FakeAnthropic(script).start()
        fakes.append(fake)
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=fake.url,
            anthropic_api_key=API_KEY,
            model="scripted-model",
            judge=False,
        )
        remote = make_remote(tmp_path, APP, name="app", message="init")
        ref = WorkspaceRef(
            request_id="honk-p-1", repo="app", remote=str(remote), base_branch="main", work_branch="honk/p-1"
        )
        return settings, ref, remote, fake

    yield make
    for fake in fakes:
        fake.stop()


def test_agent_cannot_rewrite_honk_toml_or_the_check_script(setup):
    settings, ref, remote, fake = setup(cheat("Done."))
    outcome = AgentActivities(settings).run_agent(
        AgentTask(workspace=ref, instruction="make it pass", round=1, attempt=1, invocation=1)
    )

    results = fake.tool_results()
    assert [r["is_error"] for r in results[:5]] == [True, True, True, True, False]
    assert all("is protected" in r["content"] for r in results[:4])
    assert remote_file(remote, ref.work_branch, ".honk.toml") == HONK_TOML.rstrip("\n")
    assert remote_file(remote, ref.work_branch, "checks/unit.sh") == FAILING_CHECK.rstrip("\n")
    assert outcome.changed_files == ["app.txt"]

    checks = CheckActivities(settings, Workspaces(settings)).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert not checks.passed and checks.protected_changes == []


def test_allowed_protected_change_is_flagged_and_checks_still_come_from_the_base(setup):
    settings, ref, remote, fake = setup(cheat("Rewrote the check. Token xoxb-1234567890-abcdefghijkl"))
    outcome = AgentActivities(settings).run_agent(
        AgentTask(
            workspace=ref, instruction="make it pass", round=1, attempt=1, invocation=1, allow_protected_changes=True
        )
    )
    assert remote_file(remote, ref.work_branch, ".honk.toml") == PASSING_TOML.rstrip("\n")
    # The summary is model output: redacted in the outcome and in the commit message.
    assert "xoxb-1234567890" not in outcome.summary
    assert "xoxb-1234567890" not in git.Repo(remote).git.log("--format=%B", ref.work_branch)

    checks = CheckActivities(settings, Workspaces(settings)).run_checks(ChecksTask(workspace=ref, attempt=1))

    # The work tree says `true`; the base branch says `sh checks/unit.sh`, which is what ran.
    assert [r.command for r in checks.runs] == [["sh", "checks/unit.sh"]]
    assert checks.protected_changes == [".honk.toml", "checks/unit.sh"]

    notice = Notice(
        request_id=ref.request_id,
        repo="app",
        event="needs_approval",
        stage=Stage.AWAITING_APPROVAL,
        text="Ready for review.",
        protected_changes=checks.protected_changes,
    )
    text, body = blocks.needs_approval(notice)
    assert "This change modifies protected files: .honk.toml, checks/unit.sh." in text
    assert any("protected files" in str(block) for block in body)
    page = install_page(
        PublishTask(
            request_id=ref.request_id,
            repo="app",
            build_number=1,
            commit="a" * 40,
            instruction="make it pass",
            summary=outcome.summary,
            artifacts=[],
            protected_changes=checks.protected_changes,
        ),
        [],
        page_url="http://127.0.0.1/p",
        qr=QrCode(png=b"", svg="<svg/>"),
    )
    assert "This change modifies protected files: .honk.toml, checks/unit.sh." in page
