"""README's "Using Honk", as a new user runs it: `honk demo` (what `make demo` runs), then every
line of the section's first block, in order, on the same data directory. The lines are read
from README.md, so the documentation cannot drift from what works.

Along the way it checks what a user of those commands sees: full ids in `honk list` and full
links in `honk status` at 80 columns, the request's card in the Temporal UI with clickable
links (headless Chromium), `watch --json` streaming a line per stage while the request runs,
and a refused approval naming who may approve, as a JSON error.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("aapt", "zipalign", "apksigner", "java")),
    reason="Android build tools are installed by `make test`",
)

WEB_URL = "https://git.example.invalid/acme/hello-android"


def readme_flow() -> list[str]:
    """The lines of the first shell block under "## Using Honk", comments removed."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using Honk\n") :]
    block = section[section.index("```sh\n") + 6 :]
    block = block[: block.index("```")]
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def parse(line: str) -> tuple[dict[str, str], list[str]]:
    """`[export] VAR=value ... .venv/bin/honk args`: the variables and honk's arguments."""
    words = shlex.split(line)
    if words[0] == "export":
        words = words[1:]
    assigned = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        name, _, value = words.pop(0).partition("=")
        assigned[name] = value
    if words:
        assert words[0] == ".venv/bin/honk", f"README runs something other than honk: {line}"
        words = words[1:]
    return assigned, words


def honk(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "honk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


class Lines:
    """A process's stdout lines as they come (a reader thread), with their arrival."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def drain(self) -> None:
        """After the process ended: take in every line it printed that `until` did not read."""
        self.reader.join(timeout=30)
        while not self.lines.empty():
            self.seen.append(json.loads(self.lines.get()))

    def until(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            event = json.loads(line)  # every line is one JSON object
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no such event within {timeout}s; saw {self.seen}")


def ui_card_links(ui: str, request_id: str) -> list[tuple[str, str]]:
    """The links (text, href) in the request's rendered details card in the Temporal UI."""
    from phone_browser import PhoneBrowser

    with PhoneBrowser(timeout=60) as browser:
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.call("Page.enable")
        # The card is on the request's User Metadata tab (current details).
        with urllib.request.urlopen(f"{ui}/api/v1/namespaces/default/workflows/{request_id}", timeout=30) as r:
            run_id = json.load(r)["workflowExecutionInfo"]["execution"]["runId"]
        browser.call("Page.navigate", {"url": f"{ui}/namespaces/default/workflows/{request_id}/{run_id}/user-metadata"})
        browser.wait_event("Page.loadEventFired")
        # The card is markdown rendered into sandboxed frames (summary, details).
        script = (
            "JSON.stringify([document, ...[...document.querySelectorAll('iframe')].map(f => f.contentDocument)]"
            ".filter(d => d && d.body).flatMap(d => [...d.querySelectorAll('a[href]')])"
            ".map(a => [a.innerText.trim(), a.href]))"
        )
        deadline = time.monotonic() + 60
        while True:
            links = [tuple(pair) for pair in json.loads(browser.evaluate(script) or "[]")]
            if any(href.endswith("index.html") or "index.html?" in href for _, href in links):
                return links
            if time.monotonic() > deadline:
                frames = (
                    "[...document.querySelectorAll('iframe')].map(f => (f.contentDocument && "
                    "f.contentDocument.body) ? f.contentDocument.body.innerHTML : '').join('\\n----\\n')"
                )
                raise AssertionError(f"no card links; frames: {browser.evaluate(frames)}; links: {links}")
            time.sleep(0.5)


def test_readme_using_honk_runs_in_order_after_the_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HONK_", "OTEL_"))}
    ui_port = free_port()
    env.update(
        HONK_DATA_DIR=str(tmp_path / "data"),
        HONK_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        HONK_UI_PORT=str(ui_port),
        HONK_ARTIFACT_PORT=str(free_port()),
        HONK_USER="bob",
    )
    demo = honk(env, "demo")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    flow = readme_flow()
    assert any("request" in line and "--wait" in line for line in flow)
    dev: subprocess.Popen | None = None
    watcher: Lines | None = None
    request_id = ""
    log = tmp_path / "honk-dev.log"
    try:
        for line in flow:
            assigned, args = parse(line)
            if "HONK_REGISTRY" in assigned:
                # The demo's registry, plus the repository's web page for the card's branch link.
                registry = tmp_path / "honk.toml"
                source = (ROOT / assigned.pop("HONK_REGISTRY")).read_text()
                registry.write_text(
                    source.replace('merge_strategy = "squash"', f'merge_strategy = "squash"\nweb_url = "{WEB_URL}"')
                )
                assigned["HONK_REGISTRY"] = str(registry)
            step_env = {**env, **assigned}
            if not args:
                env.update(assigned)
                continue
            args = [request_id if a == "ID" else a for a in args]
            if args[0] == "dev":
                dev = subprocess.Popen(
                    [sys.executable, "-m", "honk.cli", *args],
                    env=step_env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=log.open("ab"),
                    start_new_session=True,
                )
                deadline = time.monotonic() + 120
                while honk(step_env, "list", "--json").returncode != 0:
                    assert dev.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, "honk dev did not come up"
                    time.sleep(1)
                continue
            narrow = {**step_env, "COLUMNS": "80"}
            result = honk(narrow, *args)
            shown = result.stdout + result.stderr
            assert result.returncode == 0, f"{line}\n{shown[-3000:]}\n{log.read_text()[-2000:]}"
            command = args[0]
            if command == "request":
                first = result.stdout.splitlines()[0]
                request_id = re.match(r"^Started (honk-hello-android-[0-9a-f]{8})$", first).group(1)  # type: ignore[union-attr]
                assert "Waiting for approval." in result.stdout
                status = json.loads(honk(step_env, "status", request_id, "--json").stdout)
                assert status["stage"] == "AWAITING_APPROVAL"
                links = ui_card_links(f"http://127.0.0.1:{ui_port}", request_id)
                hrefs = {href: text for text, href in links}
                branch = status["links"]["work_branch"]
                assert f"{WEB_URL}/tree/{branch}" in hrefs, links
                assert status["links"]["install_page"] in hrefs, links
            elif command == "list":
                assert request_id in result.stdout.split(), "the full id, never cut"
                assert "Make the greeting friendlier" in " ".join(result.stdout.split())
            elif command == "status" and "--json" not in args:
                status = json.loads(honk(step_env, "status", request_id, "--json").stdout)
                for url in (status["links"]["install_page"], status["links"]["build"]):
                    assert url and any(row.endswith(" " + url) for row in result.stdout.splitlines()), url
            elif command == "request-changes":
                assert "Changes requested by bob" in result.stdout
                # A script follows the new round as JSON Lines while it runs.
                watcher = Lines(
                    subprocess.Popen(
                        [sys.executable, "-m", "honk.cli", "watch", request_id, "--json"],
                        env=step_env,
                        cwd=ROOT,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            elif command == "watch" and "--until-decision" in args:
                assert "Waiting for approval." in result.stdout
                assert watcher is not None
                # The stream (it starts with the timeline so far) reaches round 2's wait for a
                # decision while the request runs: read before anyone approves.
                watcher.until(lambda e: "Agent editing (round 2" in e.get("message", ""), 120)
                watcher.until(
                    lambda e: (
                        e.get("event") == "stage"
                        and e["stage"] == "AWAITING_APPROVAL"
                        or e.get("message") == "Waiting for approval"
                    ),
                    300,
                )
                # Someone else may not approve; under --json the refusal is an error object.
                refused = honk({**step_env, "HONK_USER": "mallory"}, "approve", request_id, "--json")
                assert refused.returncode == 2
                assert json.loads(refused.stdout) == {
                    "error": {
                        "kind": "refused",
                        "message": "refused: mallory is not an approver for hello-android; approvers: alice",
                    }
                }
            elif command == "approve":
                assert "Approved by alice" in result.stdout
            elif command == "watch":
                assert "MERGED" in result.stdout
        assert watcher is not None
        watcher.until(lambda e: e.get("event") == "stage" and e["stage"] == "MERGED", 120)
        assert watcher.process.wait(timeout=60) == 0
        watcher.drain()
        # A line per stage: each stage entered is a timeline line (`kind` "stage"), in order;
        # `event: stage` lines mark the changes the watcher saw, ending with MERGED.
        entered = [e["stage"] for e in watcher.seen if e["event"] == "timeline" and e["kind"] == "stage"]
        assert entered[-3:] == ["AWAITING_APPROVAL", "MERGING", "MERGED"], entered
        assert {"EDITING", "CHECKING", "BUILDING", "PUBLISHING"} <= set(entered)
        assert [e["stage"] for e in watcher.seen if e["event"] == "stage"][-1] == "MERGED"
        final = json.loads(honk(env, "status", request_id, "--json").stdout)
        assert final["stage"] == "MERGED" and final["round"] == 2
        refusals = [e["message"] for e in final["timeline"] if e["kind"] == "refused"]
        assert refusals == [
            "Refused approve from mallory: mallory is not an approver for hello-android; approvers: alice"
        ]
    finally:
        if dev is not None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=60)
            finally:
                if dev.poll() is None:
                    os.killpg(dev.pid, signal.SIGKILL)
        if watcher is not None and watcher.process.poll() is None:
            watcher.process.kill()
