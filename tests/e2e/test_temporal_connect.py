"""Any Temporal: TLS and API-key settings fail at start naming the setting; a connection over
mutual TLS to the dev server fronted by a TLS endpoint (the dev server itself has no TLS
options, so a loopback TLS-terminating proxy stands in for a cluster's TLS frontend); and
`honk setup` prepares a namespace that lacks the search attributes."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import sys
from pathlib import Path

import pytest
from conftest import BIN, ROOT, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from honk.config.settings import SettingsError, load_settings
from honk.config.temporal_connection import connection_options
from honk.workers.temporal import TemporalUnavailable, connect

# --------------------------------------------------------------------------- certificates


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, usage=None, sans=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key=None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A private CA, a server certificate for `temporal.honk.test` + 127.0.0.1, a client one."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Honk test CA", ca_key, _name("Honk test CA"), ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    sans = (x509.DNSName("temporal.honk.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = _issue("temporal.honk.test", server_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)  # fmt: skip
    client = _issue("honk-worker", client_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        "ca": _write(tmp_path / "ca.pem", ca),
        "server": _write(tmp_path / "server.pem", server, server_key),
        "client": _write(tmp_path / "client.pem", client, client_key),
    }


class TlsFrontend:
    """Terminates (mutual) TLS on loopback and relays the bytes to a plain gRPC frontend."""

    def __init__(self, pki: dict[str, Path], target: str) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
        self.context.load_cert_chain(pki["server"], pki["server"].with_suffix(".key"))
        self.context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client certificate from our CA
        self.context.set_alpn_protocols(["h2"])  # gRPC
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.handshakes_refused = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._relay(reader, up_writer), self._relay(up_reader, writer))

    async def __aenter__(self) -> str:
        loop = asyncio.get_running_loop()
        default = loop.get_exception_handler()

        def quiet(loop, context):  # refused handshakes are what one test wants
            if isinstance(context.get("exception"), ssl.SSLError):
                self.handshakes_refused += 1
                return
            if default:
                default(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(quiet)
        self._restore = default
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.context)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        asyncio.get_running_loop().set_exception_handler(self._restore)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("setting", "variable"),
    [
        ("temporal_tls_ca", "HONK_TEMPORAL_TLS_CA"),
        ("temporal_tls_cert", "HONK_TEMPORAL_TLS_CERT"),
        ("temporal_tls_key", "HONK_TEMPORAL_TLS_KEY"),
        ("temporal_api_key_file", "HONK_TEMPORAL_API_KEY_FILE"),
    ],
)
async def test_a_missing_file_fails_at_start_naming_the_setting(tmp_path: Path, setting: str, variable: str) -> None:
    settings = load_settings(data_dir=tmp_path, **{setting: tmp_path / "nowhere.pem"})
    with pytest.raises(SettingsError, match=rf"^{variable}: cannot read .*nowhere\.pem"):
        connection_options(settings)
    with pytest.raises(SettingsError, match=variable):
        await connect(settings)


def test_the_cli_says_which_setting_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
    env |= {"HONK_DATA_DIR": str(tmp_path), "HONK_TEMPORAL_API_KEY_FILE": str(tmp_path / "cloud.key")}
    env["COLUMNS"] = "300"  # one line on a wide terminal (rich wraps at the terminal's width)
    done = subprocess.run(
        [sys.executable, "-m", "honk.cli", "list"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: HONK_TEMPORAL_API_KEY_FILE: cannot read"), done.stderr


def test_options_for_each_kind_of_temporal(tmp_path: Path, pki: dict[str, Path]) -> None:
    assert connection_options(load_settings(data_dir=tmp_path)) == {"namespace": "default"}
    assert connection_options(load_settings(data_dir=tmp_path, temporal_tls=True))["tls"] is True
    # Temporal Cloud: the API key from a mounted file, TLS implied (the key is a bearer secret).
    (tmp_path / "cloud.key").write_text("  secret-key-123\n")
    cloud = connection_options(
        load_settings(data_dir=tmp_path, temporal_namespace="acme.a1b2c", temporal_api_key_file=tmp_path / "cloud.key")
    )
    assert cloud == {"namespace": "acme.a1b2c", "api_key": "secret-key-123", "tls": True}
    # Mutual TLS needs the certificate and its key together.
    with pytest.raises(SettingsError, match="^HONK_TEMPORAL_TLS_KEY: mutual TLS needs both"):
        connection_options(load_settings(data_dir=tmp_path, temporal_tls_cert=pki["client"]))
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(SettingsError, match="^HONK_TEMPORAL_TLS_CA: .*empty"):
        connection_options(load_settings(data_dir=tmp_path, temporal_tls_ca=tmp_path / "empty.pem"))


# --------------------------------------------------------------------------- over TLS


async def test_connects_over_mutual_tls_to_a_tls_frontend(dev_env, pki: dict[str, Path], tmp_path: Path) -> None:
    target = dev_env.client.service_client.config.target_host
    async with TlsFrontend(pki, target) as address:
        settings = load_settings(
            data_dir=tmp_path,
            temporal_address=address,
            temporal_tls_ca=pki["ca"],
            temporal_tls_cert=pki["client"],
            temporal_tls_key=pki["client"].with_suffix(".key"),
            temporal_tls_server_name="temporal.honk.test",
        )
        client = await connect(settings)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        assert info.server_version
        assert await client.count_workflows("WorkflowType = 'NoSuchWorkflow'") is not None

        # Without a client certificate the frontend refuses the handshake: a clear start-up error.
        no_cert = settings.model_copy(update={"temporal_tls_cert": None, "temporal_tls_key": None})
        with pytest.raises(TemporalUnavailable, match=f"cannot reach the Temporal server at {address}"):
            await connect(no_cert)


# --------------------------------------------------------------------------- honk setup


def _honk(env: dict[str, str], *args: str):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "honk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


async def test_setup_registers_search_attributes_idempotently(tmp_path: Path) -> None:
    import os

    env = await WorkflowEnvironment.start_local(
        port=free_port(),
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
    )  # started WITHOUT Honk's search attributes
    try:
        honk_env = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
        honk_env |= {
            "HONK_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "HONK_DATA_DIR": str(tmp_path),
        }
        before = await asyncio.to_thread(_honk, honk_env, "list", "--stage", "AWAITING_APPROVAL")
        assert before.returncode != 0  # HonkStage is unknown to this namespace

        first = await asyncio.to_thread(_honk, honk_env, "setup")
        assert first.returncode == 0, first.stderr
        assert "Registered HonkRepo, HonkStage, HonkRequester on namespace default" in " ".join(first.stdout.split())
        second = await asyncio.to_thread(_honk, honk_env, "setup")
        assert second.returncode == 0, second.stderr
        assert "already registered" in second.stdout

        listed = await asyncio.to_thread(_honk, honk_env, "list", "--stage", "AWAITING_APPROVAL", "--json")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == "[]"
    finally:
        await env.shutdown()
