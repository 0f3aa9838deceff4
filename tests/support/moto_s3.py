"""moto's S3 in server mode: a separate process on 127.0.0.1 that boto3 talks real HTTP to
(never a mock inside the test process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from honk.config.settings import Settings, load_settings

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)

    def settings(self, data_dir: Path, **overrides: object) -> Settings:
        """Honk settings for a fresh bucket on this server (created here)."""
        bucket = f"honk-{uuid.uuid4().hex[:10]}"
        settings = load_settings(
            **{
                "data_dir": data_dir,
                "artifact_store": "s3",
                "s3_bucket": bucket,
                "s3_endpoint_url": self.endpoint,
                "s3_region": "eu-west-1",
                "s3_access_key_id": "AKIAHONKTEST",
                "s3_secret_access_key": "honk-test-secret",
                **overrides,
            }
        )
        from honk.publish.store import s3_client

        s3_client(settings).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        return settings

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
