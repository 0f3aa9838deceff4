"""No input crashes Honk: property-based tests over the configuration loaders (a fixed
example budget, so CI time is bounded), plus the size limits users can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honk.config.registry import RegistryError, load_registry
from honk.config.repository import RepoConfigError, load_repo_config
from honk.git.refs import valid_branch

EXAMPLES = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

toml_scalars = st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=False), st.booleans())
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def toml_dump(value: object) -> str:
    """A tiny TOML writer for generated documents (top-level keys with inline values)."""

    def scalar(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)

    assert isinstance(value, dict)
    return "\n".join(f"{json.dumps(k)} = {scalar(v)}" for k, v in value.items()) + "\n"


@EXAMPLES
@given(st.text(max_size=400))
def test_honk_toml_arbitrary_text_loads_or_explains(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("repo")
    (root / ".honk.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_repo_config(root)
    except RepoConfigError as exc:
        assert str(exc).startswith(".honk.toml")


@EXAMPLES
@given(st.dictionaries(st.sampled_from(["checks", "build", "agent", "other"]), toml_values, max_size=3))
def test_honk_toml_arbitrary_structure_loads_or_explains(tmp_path_factory, document):
    root = tmp_path_factory.mktemp("repo")
    try:
        (root / ".honk.toml").write_text(toml_dump(document), encoding="utf-8")
    except (UnicodeEncodeError, TypeError):
        return
    try:
        config = load_repo_config(root)
    except RepoConfigError as exc:
        assert str(exc).startswith(".honk.toml") and len(str(exc)) < 20_000
    else:
        assert all(c.run for c in config.checks)


@EXAMPLES
@given(st.binary(max_size=300))
def test_honk_toml_arbitrary_bytes_loads_or_explains(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("repo")
    (root / ".honk.toml").write_bytes(data)
    try:
        load_repo_config(root)
    except RepoConfigError:
        pass


@EXAMPLES
@given(st.text(max_size=300))
def test_registry_arbitrary_text_loads_or_explains(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("reg") / "honk.toml"
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:
        return
    try:
        load_registry(path, Path("/data"))
    except RegistryError as exc:
        assert str(path) in str(exc)


@EXAMPLES
@given(st.text(max_size=60))
def test_branch_validation_never_accepts_what_git_rejects(name):
    if valid_branch(name):
        assert ".." not in name and not name.startswith("-") and " " not in name and "\n" not in name


def test_oversized_config_is_refused_clearly(tmp_path):
    (tmp_path / ".honk.toml").write_text("# " + "x" * 300_000)
    with pytest.raises(RepoConfigError, match="larger than"):
        load_repo_config(tmp_path)


def test_registry_rejects_a_bad_base_branch(tmp_path):
    path = tmp_path / "honk.toml"
    path.write_text('[repos.app]\nremote = "/r.git"\napprovers = ["a"]\nbase_branch = "main..evil"\n')
    with pytest.raises(RegistryError, match="not a valid branch name"):
        load_registry(path, tmp_path)


# --------------------------------------------------------------------------- the chat parser

slack_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "<@U0HONK>",
                "<@W123|bob>",
                "in",
                "hello-android",
                "web-app",
                ":",
                ",",
                "\n",
                "<#C0MOBILE|mobile>",
                "<!here>",
                "<https://x.example|x>",
                "&lt;",
                "approve",
                "cancel",
                "lgtm",
                "status",
                "list",
                "help",
                " ",
                "make it blue",
                "in nope",
            ]
        ),
        max_size=12,
    ).map("".join),
)


@pytest.fixture(scope="module")
def chat_registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "honk.toml"
    path.write_text(
        '[repos.hello-android]\nremote = "/r.git"\nchannels = ["C0MOBILE"]\napprovers = ["U0A"]\n'
        '[repos.web-app]\nremote = "/w.git"\napprovers = ["U0A"]\n'
    )
    return load_registry(path, path.parent)


@EXAMPLES
@given(text=slack_text, channel=st.sampled_from([None, "C0MOBILE", "C0OTHER", "D0DM"]))
def test_chat_messages_parse_or_get_a_clear_reply(chat_registry, text, channel):
    from honk.chat.parse import MAX_INSTRUCTION, ParseError, read_request

    try:
        ask = read_request(text, bot_user="U0HONK", registry=chat_registry, channel=channel)
    except ParseError as exc:
        assert str(exc).strip(), "a refusal always says what to do"
    else:
        assert ask.instruction.strip() and len(ask.instruction) <= MAX_INSTRUCTION
        assert ask.repo.name in chat_registry.repos


@EXAMPLES
@given(slack_text)
def test_thread_replies_and_commands_never_crash(text):
    from honk.chat.parse import ParseError, read_command, read_reply

    steer = read_reply(text, bot_user="U0HONK")
    assert steer is None or steer.action in ("approve", "cancel", "request_changes")
    try:
        command = read_command(text)
    except ParseError as exc:
        assert str(exc).strip()
    else:
        assert command.kind in ("help", "list", "status", "request")
