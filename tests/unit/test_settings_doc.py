"""README's settings table is the settings model's, and malformed values fail in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from honk.config.settings import Settings, SettingsError, load_settings
from honk.config.settings_doc import TABLE_BEGIN, TABLE_END, readme_block

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_generated_from_the_model():
    readme = (ROOT / "README.md").read_text()
    begin, end = readme.index(TABLE_BEGIN), readme.index(TABLE_END) + len(TABLE_END)
    assert readme[begin:end] == readme_block(), "regenerate it: honk settings-table"
    for name, field in Settings.model_fields.items():
        assert f"`HONK_{name.upper()}`" in readme[begin:end], name
        assert field.description, f"{name} needs a description for README's table"
    assert "`HONK_UI_PORT` | `8233`" in readme


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HONK_SANDBOX_WRITABLE", "/tmp", 'HONK_SANDBOX_WRITABLE: expected a JSON list of paths, e.g. ["/tmp"]'),
        ("HONK_UI_PORT", "eighty", "HONK_UI_PORT: expected a whole number from 1 to 65535, got 'eighty'"),
        ("HONK_JUDGE", "maybe", "HONK_JUDGE: expected true or false, got 'maybe'"),
        ("HONK_SANDBOX", "docker", "HONK_SANDBOX: expected one of auto, bwrap, none, got 'docker'"),
        ("HONK_TEMPORAL_ADDRESS", "localhost", "HONK_TEMPORAL_ADDRESS: expected host:port, got 'localhost'"),
    ],
)
def test_a_malformed_setting_fails_in_one_line_naming_the_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == expected


def test_the_cli_prints_the_one_line_and_the_port_actually_set(tmp_path):
    env = {**os.environ, "HONK_SANDBOX_WRITABLE": "/tmp", "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([sys.executable, "-m", "honk.cli", "list"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == 'error: HONK_SANDBOX_WRITABLE: expected a JSON list of paths, e.g. ["/tmp"]'
    as_json = subprocess.run(
        [sys.executable, "-m", "honk.cli", "list", "--json"], env=env, capture_output=True, text=True
    )
    assert as_json.stdout.strip().startswith('{\n  "error": {\n    "kind": "settings"')
    env = {**os.environ, "HONK_UI_PORT": "18999", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    for args in (["--help"], ["dev", "--help"]):
        shown = subprocess.run([sys.executable, "-m", "honk.cli", *args], env=env, capture_output=True, text=True)
        assert "http://localhost:18999" in shown.stdout, args
