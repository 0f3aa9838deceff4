"""The registry's approval policy per repository (issue 12)."""

from __future__ import annotations

import pytest

from honk.config.registry import RegistryError, load_registry


def test_policy_is_read_per_repository_with_safe_defaults(tmp_path):
    path = tmp_path / "honk.toml"
    path.write_text(
        '[repos.app]\nremote = "/r.git"\napprovers = ["U1", "U2"]\nallow_self_approval = false\n'
        'min_approvers = 2\nprotected_paths = ["infra/*"]\nprotected_approvers = ["U2"]\n'
        '[repos.web]\nremote = "/w.git"\napprovers = ["U1"]\n'
    )
    registry = load_registry(path, tmp_path)
    app, web = registry.get("app"), registry.get("web")
    assert (app.allow_self_approval, app.min_approvers, app.protected_approvers) == (False, 2, ["U2"])
    assert (web.allow_self_approval, web.min_approvers, web.protected_paths) == (True, 1, [])


def test_a_policy_nobody_can_meet_is_refused(tmp_path):
    path = tmp_path / "honk.toml"
    path.write_text('[repos.app]\nremote = "/r.git"\napprovers = ["U1"]\nmin_approvers = 0\n')
    with pytest.raises(RegistryError, match="min_approvers"):
        load_registry(path, tmp_path)
