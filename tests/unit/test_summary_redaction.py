"""The agent's summary is model output: a secret in it never reaches the merge commit
message or the install page."""

from __future__ import annotations

from honk.merge import merge_message
from honk.publish.install_page import install_page
from honk.publish.qr import QrCode
from honk.workflows.contract import MergeTask, PublishTask, WorkspaceRef

LEAK = "deploy with xoxb-1234567890-abcdefghij and sk-ant-api03-abcdefghijklmnop"


def test_merge_message_masks_secrets_in_title_and_body():
    ref = WorkspaceRef(request_id="r1", repo="app", remote="/tmp/r.git", base_branch="main", work_branch="honk/r1")
    message = merge_message(
        MergeTask(workspace=ref, title=LEAK, body=LEAK, requested_by="U1", approved_by="U2", tested_sha="a" * 40)
    )
    assert "xoxb-1234567890" not in message and "sk-ant-api03" not in message
    assert "[REDACTED]" in message
    assert "Honk-Request: r1" in message


def test_install_page_masks_secrets_in_the_summary():
    task = PublishTask(
        request_id="r1", repo="app", build_number=1, commit="a" * 40, instruction="fix", summary=LEAK, artifacts=[]
    )
    page = install_page(task, [], page_url="http://127.0.0.1/p", qr=QrCode(png=b"", svg="<svg/>"))
    assert "xoxb-1234567890" not in page and "sk-ant-api03" not in page
