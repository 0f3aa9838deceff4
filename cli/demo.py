"""`honk demo`: the whole pipeline on the sample Android app, offline, on the embedded stack.

The model is scripted (recorded edits served in place of Claude) and the demo says so.
It approves through the same `approve` signal a script would send, and exits 0 only if the
change was merged.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import git
from rich.console import Console

from honk.changes import follow, start_request
from honk.cli.devstack import EmbeddedStack
from honk.cli.display import timeline_line
from honk.config.registry import load_registry
from honk.config.settings import Settings
from honk.workflows.contract import SIGNAL_APPROVE, Stage

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE_APP = EXAMPLES / "hello-android"
DEMO_REGISTRY = EXAMPLES / "honk.toml"
DEMO_REPO = "hello-android"
DEMO_APPROVER = "alice"
DEMO_INSTRUCTION = "Change the greeting to say 'Hello from the bus!'"
TRAILERS = ("Honk-Request:", "Requested-by:", "Approved-by:")


def create_remote(source: Path, remote: Path) -> Path:
    """A fresh bare 'remote' holding the sample app as one commit on main."""
    if remote.exists():
        shutil.rmtree(remote)
    remote.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "app"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("build", "__pycache__"))
        repo = git.Repo.init(work, initial_branch="main")
        repo.git.add(A=True)
        repo.git.commit(
            "-m",
            "Sample app",
            author="Honk Demo <demo@honk.invalid>",
            env={"GIT_COMMITTER_NAME": "Honk Demo", "GIT_COMMITTER_EMAIL": "demo@honk.invalid"},
        )
        git.Repo.clone_from(str(work), str(remote), bare=True)
    return remote


def verify_apk(path: Path) -> str:
    if not shutil.which("apksigner"):
        return "apksigner not installed; signature not verified"
    result = subprocess.run(["apksigner", "verify", str(path)], capture_output=True, text=True)
    return "apksigner verify: OK" if result.returncode == 0 else f"apksigner verify FAILED: {result.stderr.strip()}"


async def run_demo(settings: Settings) -> int:
    console = Console()
    console.rule("[bold]Honk demo")
    if settings.offline_model:
        console.print(
            "[bold yellow]The model is SCRIPTED:[/] a local server speaking the Messages API replays "
            "recorded tool calls in place of Claude, so the demo runs offline. Everything else is real: "
            "the agent loop, Temporal, git, checks, the APK build, publishing. Set ANTHROPIC_API_KEY "
            "to use Claude."
        )
    else:
        console.print(f"Model: [bold]{settings.model}[/] (ANTHROPIC_API_KEY is set)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    remote = create_remote(SAMPLE_APP, settings.data_dir / "remotes" / f"{DEMO_REPO}.git")
    registry = load_registry(DEMO_REGISTRY, settings.data_dir)
    console.print(f"Remote: {remote}")

    async with EmbeddedStack(settings) as stack:
        console.print(f"Temporal UI: {stack.server.ui_url}   artifacts: {stack.store.url}")
        handle = await start_request(
            stack.client,
            stack.settings,
            registry,
            repo=DEMO_REPO,
            instruction=DEMO_INSTRUCTION,
            requester=settings.user,
        )
        console.print(f"Request [bold]{handle.id}[/]: {DEMO_INSTRUCTION}\n")
        shown = 0
        approved = False
        final = None
        async for status in follow(stack.client, handle.id):
            for entry in status.timeline[shown:]:
                console.print("  " + timeline_line(entry), highlight=False)
            shown = len(status.timeline)
            final = status
            if status.stage == Stage.AWAITING_APPROVAL and not approved:
                console.print(f"\n  Install page: [link]{status.links.install_page}[/]")
                console.print(
                    f"  Approving as {DEMO_APPROVER} with the `{SIGNAL_APPROVE}` signal, as "
                    f'`temporal workflow signal --name approve --input \'{{"by":"{DEMO_APPROVER}"}}\'` would.\n'
                )
                await handle.signal(SIGNAL_APPROVE, {"by": DEMO_APPROVER, "comment": "Looks good on my phone"})
                approved = True

    if final is None or final.stage != Stage.MERGED:
        console.print(
            f"[bold red]Not merged[/]: {final.stage.value if final else 'no status'}"
            + (f" — {final.last_error}" if final and final.last_error else "")
        )
        return 1
    message = git.Repo(remote).git.log("-1", "--format=%B", final.links.merged_commit)
    missing = [t for t in TRAILERS if t not in message]
    apk = next((Path(a.path) for a in final.artifacts if a.name.endswith(".apk")), None)
    console.rule("[bold green]Merged")
    console.print(f"Merged commit: {final.links.merged_commit} on {DEMO_REPO}/main")
    console.print(message.strip(), highlight=False)
    console.print(f"Install page:  {final.links.install_page}  (served while `honk dev` runs)")
    console.print(f"APK:           {final.links.build}")
    if apk:
        console.print(verify_apk(apk))
    if missing:
        console.print(f"[bold red]The merged commit lacks trailers: {', '.join(missing)}")
        return 1
    return 0
