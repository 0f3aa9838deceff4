"""What a change request says (details card, commit message, timeline texts), without a
server. These texts are in running requests' histories: they must not drift."""

from __future__ import annotations

from datetime import UTC, datetime

from honk.workflows import wording
from honk.workflows.contract import (
    AgentOutcome,
    ArtifactInfo,
    BuildOutcome,
    BuildTargetRef,
    ChangeRequest,
    CheckRun,
    ChecksOutcome,
    Decision,
    Links,
    RequestState,
    Stage,
    Usage,
)

REQUEST = ChangeRequest(repo="app", remote="file:///x.git", instruction="fix the crash", requester="bob")


def state(**fields) -> RequestState:
    return RequestState(request_id="honk-app-1", repo="app", instruction="fix the crash", requester="bob", **fields)


def test_card_shows_stage_links_usage_and_error_when_failed():
    assert wording.card(REQUEST, state()) == (
        "### RECEIVED\n\n**app** · requested by bob · round 0, attempt 0\n\n> fix the crash\n"
    )
    full = state(
        stage=Stage.FAILED,
        round=2,
        attempt=1,
        links=Links(work_branch="honk/app-1", install_page="http://p/1", merged_commit=None),
        usage=Usage(input_tokens=10, output_tokens=2, cache_read_tokens=3, cost_usd=0.5),
        last_error="x" * 600,
    )
    assert wording.card(REQUEST, full) == (
        "### FAILED\n\n**app** · requested by bob · round 2, attempt 1\n\n> fix the crash\n\n"
        "- Work branch: honk/app-1\n- Install page: [http://p/1](http://p/1)\n"
        "- Tokens: 10 in / 2 out / 3 cache read · $0.5000\n\n**Error:** " + "x" * 500 + "\n"
    )
    assert "Error" not in wording.card(REQUEST, full.model_copy(update={"stage": Stage.EDITING}))


def test_card_renders_links_outside_the_quote_and_clickable():
    from markdown_it import MarkdownIt

    request = REQUEST.model_copy(update={"remote": "git@github.com:acme/app.git"})
    waiting = state(
        stage=Stage.AWAITING_APPROVAL,
        links=Links(work_branch="honk/app-1", install_page="http://p/1", merged_commit="abc123"),
    ).model_copy(update={"instruction": "fix the crash\nand the typo"})
    html = MarkdownIt().render(wording.card(request, waiting))
    quote = html[html.index("<blockquote>") : html.index("</blockquote>")]
    assert "fix the crash" in quote and "and the typo" in quote and "Work branch" not in quote
    assert '<a href="https://github.com/acme/app/tree/honk/app-1">honk/app-1</a>' in html
    assert '<a href="http://p/1">http://p/1</a>' in html
    assert '<a href="https://github.com/acme/app/commit/abc123">abc123</a>' in html
    # A registry web_url wins; a local remote with none gives plain text, not a broken link.
    explicit = REQUEST.model_copy(update={"web_url": "https://git.example.com/app/"})
    assert "(https://git.example.com/app/tree/honk/app-1)" in wording.card(explicit, waiting)
    assert "- Work branch: honk/app-1\n" in wording.card(REQUEST, waiting)
    for remote, page in [
        ("https://gitlab.com/a/b.git", "https://gitlab.com/a/b"),
        ("https://user@github.com/a/b", "https://github.com/a/b"),
        ("ssh://git@host.example:2222/a/b.git", "https://host.example/a/b"),
        ("/srv/git/b.git", None),
        ("file:///srv/git/b.git", None),
    ]:
        assert wording.web_page(REQUEST.model_copy(update={"remote": remote})) == page, remote


def test_commit_title_and_body():
    assert wording.commit_title("  fix it\nmore words") == "fix it"
    assert wording.commit_title("   ") == "change"
    assert wording.commit_title("a" * 80) == "a" * 69 + "..."
    assert wording.commit_title("a" * 72) == "a" * 72
    assert wording.commit_body("bob", None) == "Requested through Honk by bob."
    assert wording.commit_body("bob", "Fixed it.") == "Requested through Honk by bob.\n\nFixed it."


def test_timeline_texts():
    agent = AgentOutcome(
        summary="done", changed_files=[f"f{i}" for i in range(7)], head_sha="s", backend="anthropic", model="m", turns=3
    )
    assert wording.agent_finished(agent) == "Agent (anthropic, m, 3 turns) finished: done [f0, f1, f2, f3, f4]"
    assert wording.agent_finished(agent.model_copy(update={"changed_files": []})).endswith("[no files]")
    advice = (
        "; nothing to review. If the base branch already does what was asked, there is nothing to do;"
        " otherwise start a new request that says what should differ."
    )
    assert wording.no_change(agent) == "the agent made no change to the repository (it said: done)" + advice
    assert (
        wording.no_change(agent.model_copy(update={"summary": ""}))
        == "the agent made no change to the repository" + advice
    )
    runs = [
        CheckRun(name="unit", command=["t"], exit_code=0, duration_s=1),
        CheckRun(name="lint", command=["l"], exit_code=1, duration_s=1),
    ]
    assert wording.checks_finished(ChecksOutcome(passed=False, head_sha="s", runs=runs)) == (
        "Checks failed: unit ok, lint FAILED"
    )
    assert wording.checks_finished(ChecksOutcome(passed=True, head_sha="s")) == "Checks passed: none configured"
    assert wording.checks_still_failing(3, 1, "boom") == "checks still failing after 3 attempts in round 1:\nboom"
    assert wording.editing(2, 1) == "Agent editing (round 2, attempt 1)"
    assert wording.attempt_failed(2) == "Attempt 2 failed; sending the failure back to the agent"
    targets = [BuildTargetRef(name="android"), BuildTargetRef(name="ios", task_queue="macos")]
    assert wording.building(targets) == "Building android, ios (on macos)"
    apk = ArtifactInfo(
        target="android", name="app.apk", path="/a", sha256="0", size=13, package="dev.honk", version_name="1.2"
    )
    assert wording.artifact(apk) == "app.apk (13 bytes, dev.honk 1.2)"
    assert wording.artifact(apk.model_copy(update={"version_code": "7"})) == "app.apk (13 bytes, dev.honk 1.2 (7))"
    bare = apk.model_copy(update={"package": None, "version_name": None, "version_code": "7"})
    assert wording.artifact(bare) == "app.apk (13 bytes, 7)"
    assert wording.artifact(bare.model_copy(update={"version_code": None})) == "app.apk (13 bytes)"
    built = BuildOutcome(target="android", head_sha="s", artifacts=[apk], duration_s=41.6)
    assert wording.built(built) == "Built android in 42s: app.apk (13 bytes, dev.honk 1.2)"


def test_notice_texts():
    deadline = datetime(2025, 3, 4, 5, 6, tzinfo=UTC)
    assert wording.reminder(deadline) == "Reminder: this request expires at 2025-03-04 05:06 UTC unless approved."
    assert wording.merge_gave_up(Exception("conflict"), 2) == (
        "conflict (gave up after 2 repair rounds; resolve it by hand or start a new request)"
    )
    assert wording.cancelled(None) == "Cancelled"
    assert wording.cancelled(Decision(by="bob", text=" not needed ")) == "Cancelled by bob: not needed"
    assert wording.cancelled(Decision(by="bob")) == "Cancelled by bob"
    assert wording.refused("request_changes", "", "no") == (
        "Refused request_changes from unknown: no",
        "Someone tried to request changes: no",
    )


def test_decision_text_reads_the_older_comment_field():
    assert Decision.model_validate({"by": "a", "comment": "ship it"}).text == "ship it"
    assert Decision.model_validate({"by": "a", "text": "blue"}).text == "blue"
    assert Decision.model_validate({"by": "a", "comment": "", "text": "blue"}).text == "blue"
    assert "comment" not in Decision(by="a", text="x").model_dump()
