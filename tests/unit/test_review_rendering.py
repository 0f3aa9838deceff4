"""What an approver sees of a change besides a build (issue 14, item 7), on every surface:
the Slack approval request, the status view, the Temporal UI card and the summary page; plus
where the compare link points for each kind of remote. File names are hostile."""

from __future__ import annotations

import pytest
from rich.console import Console

from honk.cli.display import render_status
from honk.publish.install_page import install_page
from honk.publish.qr import qr_code
from honk.slack import blocks
from honk.workflows import wording
from honk.workflows.contract import ChangeRequest, Links, Notice, PublishTask, RequestState, RequestStatus, Stage
from honk.workflows.contract_review import review, short_stat

BRANCH = "honk/app-1"
HOSTILE = "docs/<script>alert(1)</script>`x`.md"
FILES = sorted([HOSTILE, *(f"src/module_{n:02}.py" for n in range(14))])
STAT = "\n".join(f" {f} | 2 +-" for f in FILES) + "\n 15 files changed, 15 insertions(+), 15 deletions(-)"


def request(remote: str, web_url: str | None = None) -> ChangeRequest:
    return ChangeRequest(repo="app", remote=remote, instruction="fix it", requester="bob", web_url=web_url)


@pytest.mark.parametrize(
    ("remote", "web_url", "expected"),
    [
        ("https://github.com/acme/app.git", None, "https://github.com/acme/app/compare/main...honk/app-1"),
        ("git@github.com:acme/app.git", None, "https://github.com/acme/app/compare/main...honk/app-1"),
        ("ssh://git@github.com:22/acme/app.git", None, "https://github.com/acme/app/compare/main...honk/app-1"),
        ("https://gitlab.com/group/sub/app.git", None, "https://gitlab.com/group/sub/app/-/compare/main...honk/app-1"),
        ("git@gitea.example.org:team/app.git", None, "https://gitea.example.org/team/app/compare/main...honk/app-1"),
        ("/srv/git/app.git", "https://code.example.com/app/", "https://code.example.com/app/compare/main...honk/app-1"),
        ("file:///srv/git/app.git", None, None),
        ("/srv/git/app.git", None, None),
    ],
)
def test_the_compare_link_follows_the_forge(remote, web_url, expected):
    assert wording.compare_page(request(remote, web_url), BRANCH) == expected


def approval(links: Links) -> Notice:
    return Notice(
        request_id="honk-app-1",
        repo="app",
        event="needs_approval",
        stage=Stage.AWAITING_APPROVAL,
        text=wording.READY_FOR_REVIEW,
        links=links,
        review=review(STAT, FILES, BRANCH, links.compare),
    )


def test_the_approval_request_shows_the_changes_and_where_to_read_them():
    compare = "https://github.com/acme/app/compare/main...honk/app-1"
    links = Links(work_branch=BRANCH, compare=compare, summary_page="https://store/honk-app-1/9/index.html")
    text, body = blocks.needs_approval(approval(links))

    changes = next(b["text"]["text"] for b in body if b["type"] == "section" and "*Changes*" in b["text"]["text"])
    assert "`src/module_00.py`" in changes and "and 5 more" in changes, "the first 10 files, then a count"
    assert "<script>" not in changes and "&lt;script&gt;" in changes
    code = changes.split("```")[1]
    assert "`" not in code and code.endswith("15 files changed, 15 insertions(+), 15 deletions(-)")
    facts = next(b["elements"][0]["text"] for b in body if b["type"] == "context")
    assert f"Compare: <{compare}|{BRANCH}>" in facts
    assert "Summary: <https://store/honk-app-1/9/index.html|summary page>" in facts and "Install" not in facts
    assert text.endswith("(15 files changed, 15 insertions(+), 15 deletions(-))")
    assert body[-1]["block_id"] == blocks.DECISION_BLOCK, "the buttons stay last"


def test_an_approval_without_a_forge_names_the_branch_and_a_huge_stat_is_cut():
    huge = "\n".join(f" src/f{n}.py | 1 +" for n in range(2000)) + "\n 2000 files changed, 2000 insertions(+)"
    notice = approval(Links(work_branch=BRANCH, install_page="https://store/1/index.html"))
    notice.review = review(huge, FILES, BRANCH, None)
    _, body = blocks.needs_approval(notice)
    assert all(len(b["text"]["text"]) <= 3000 for b in body if b["type"] == "section")
    changes = next(b["text"]["text"] for b in body if b["type"] == "section" and "*Changes*" in b["text"]["text"])
    assert changes.rstrip("`").endswith("2000 files changed, 2000 insertions(+)") and " ..." in changes
    facts = next(b["elements"][0]["text"] for b in body if b["type"] == "context")
    assert f"Branch: `{BRANCH}`" in facts and "Install: <https://store/1/index.html|install page>" in facts


def test_short_stat_keeps_the_summary_line():
    assert short_stat("a | 1 +\n 1 file changed") == "a | 1 +\n 1 file changed"
    cut = short_stat(STAT, 200)
    assert len(cut) <= 200 and cut.endswith("15 files changed, 15 insertions(+), 15 deletions(-)")


def waiting_state() -> RequestState:
    return RequestState(
        request_id="honk-app-1",
        repo="app",
        instruction="fix it",
        requester="bob",
        stage=Stage.AWAITING_APPROVAL,
        changed_files=FILES,
        diff_stat=STAT,
        links=Links(work_branch=BRANCH, compare="https://github.com/acme/app/compare/main...honk/app-1"),
    )


def test_the_card_links_the_compare_view_and_lists_the_changes():
    card = wording.card(request("git@github.com:acme/app.git"), waiting_state())
    assert "- Compare: [changes on main](https://github.com/acme/app/compare/main...honk/app-1)" in card
    files = next(line for line in card.splitlines() if line.startswith("- Changed files:"))
    assert "`src/module_00.py`" in files and files.endswith("and 5 more")
    assert "`docs/<script>alert(1)</script>'x'.md`" in files, "a backtick cannot end the code span"
    assert "\n```\n docs/<script>alert(1)</script>'x'.md | 2 +-\n" in card
    assert card.endswith("15 files changed, 15 insertions(+), 15 deletions(-)\n```\n")


def test_status_shows_files_diff_stat_and_compare_link():
    status = RequestStatus.model_validate(waiting_state().model_dump())
    console = Console(record=True, width=200)
    render_status(console, status, timeline=0)
    shown = console.export_text()
    assert "changed files" in shown and "src/module_09.py" in shown and "and 5 more" in shown
    assert "src/module_13.py | 2 +-" in shown, "the whole diff stat"
    assert "compare: https://github.com/acme/app/compare/main...honk/app-1" in shown
    assert status.model_dump(mode="json")["diff_stat"] == STAT, "`honk status --json` carries it"


def test_the_summary_page_shows_the_change_escaped():
    files = [*FILES, *(f"more/{n}.txt" for n in range(60))]
    task = PublishTask(
        request_id="honk-app-1",
        repo="app",
        build_number=7,
        commit="c0ffee" * 7,
        instruction="fix <b>it</b>",
        summary="Fixed.",
        artifacts=[],
        review=review(STAT, files, BRANCH, "https://github.com/acme/app/compare/main...honk/app-1", "Checks passed"),
    )
    page = install_page(task, [], page_url="https://store/p", qr=qr_code("https://store/p"))
    assert "Change summary" in page and "build #" not in page and 'id="install"' not in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "fix &lt;b&gt;it&lt;/b&gt;" in page
    assert "and 25 more" in page, "the first 50 files, then a count"
    assert 'href="https://github.com/acme/app/compare/main...honk/app-1">Compare honk/app-1 with its base' in page
    assert "15 files changed" in page and "Checks passed" in page
