"""Secrets never reach logs, check output or the model."""

from __future__ import annotations

import io
import json
import logging

from honk.config.settings import load_settings
from honk.logs import configure_logging
from honk.redact import MASK, Redactor, redact, remember_secrets, secret_env_values, secret_values

TOKENS = {
    "slack bot": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUv",
    "slack app": "xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "anthropic": "sk-ant-api03-AbCdEf0123456789_ghIJkl-mnOPqr",
    "aws key id": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "github pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
}


def test_token_shapes_are_masked():
    redactor = Redactor()
    for name, token in TOKENS.items():
        text = f"before {token} after"
        assert redactor(text) == f"before {MASK} after", name
    assert (
        redactor("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        == f"aws_secret_access_key = {MASK}"
    )
    assert redactor("Authorization: Bearer abcdef0123456789xyz") == f"Authorization: Bearer {MASK}"
    assert redactor("https://bot:s3cr3t-token@git.example.com/r.git") == f"https://bot:{MASK}@git.example.com/r.git"


def test_configured_secret_values_are_masked_even_without_a_shape():
    settings = load_settings(
        anthropic_api_key="plain-looking-key-42", git_username="bot", git_password="hunter2hunter2"
    )
    redactor = Redactor(secret_values(settings))
    assert redactor("key=plain-looking-key-42 pw=hunter2hunter2") == f"key={MASK} pw={MASK}"
    assert redactor("ordinary words stay") == "ordinary words stay"


def test_log_lines_are_redacted_in_message_and_fields():
    stream = io.StringIO()
    configure_logging("INFO", stream)
    remember_secrets(["correct-horse-battery"])
    logging.getLogger("honk.test").info(
        "calling with %s", TOKENS["anthropic"], extra={"header": "Bearer correct-horse-battery"}
    )
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert TOKENS["anthropic"] not in json.dumps(line) and "correct-horse-battery" not in json.dumps(line)
    assert line["msg"] == f"calling with {MASK}"


def test_agent_tool_results_and_check_output_are_redacted(tmp_path):
    from honk.agent.tools import WorkspaceTools
    from honk.checks import run_checks_in
    from honk.config.repository import CheckSpec, RepoConfig

    (tmp_path / "settings.env").write_text(f"SLACK={TOKENS['slack bot']}\n")
    tools = WorkspaceTools(tmp_path, run_checks=lambda: "")
    result = tools.call("read_file", {"path": "settings.env"})
    assert TOKENS["slack bot"] not in result.text and MASK in result.text

    spec = CheckSpec(name="leaky", run=["cat", "settings.env"])
    [run] = run_checks_in(
        load_settings(data_dir=tmp_path / "data"), tmp_path, RepoConfig(checks=[spec]), "repo", "honk-x-1", "t"
    )
    assert TOKENS["slack bot"] not in run.output and MASK in run.output


def test_secret_named_environment_variables_are_secrets():
    environ = {
        "MY_DEPLOY_TOKEN": "deploy-0123456789",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-not-the-shape",
        "DB_PASSWORD": "hunter2hunter2",
        "STRIPE_API_KEY": "rk_live_abcdef",
        "SIGNING_KEY": "signing-abcdef",
        "GOOGLE_CREDENTIALS": "cred-abcdef",
        "PATH": "/usr/local/bin:/usr/bin",
        "KEYBOARD": "us-international",
        "LANG": "C.UTF-8",
    }
    values = secret_env_values(environ)
    assert sorted(values) == sorted(v for k, v in environ.items() if k not in ("PATH", "KEYBOARD", "LANG"))
    redactor = Redactor(values)
    assert redactor("push with deploy-0123456789 as hunter2hunter2") == f"push with {MASK} as {MASK}"
    assert redactor("PATH=/usr/local/bin:/usr/bin") == "PATH=/usr/local/bin:/usr/bin"


def test_worker_start_registers_secret_named_environment_values(monkeypatch):
    monkeypatch.setenv("MY_DEPLOY_TOKEN", "deploy-token-from-env-42")
    remember_secrets(secret_values(load_settings()))  # what the worker and chat service do at start
    assert redact("summary: deploy-token-from-env-42") == f"summary: {MASK}"
