"""The SFTP text parsers (scripts, SSH options, host keys, private keys): examples and Hypothesis."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from connections.sftp_parsing import (
    COMMANDS,
    Command,
    load_private_key,
    parse_host_keys,
    parse_script,
    parse_ssh_options,
)


def test_a_script_is_read_line_by_line_with_flags_quotes_comments_and_dashes() -> None:
    commands = parse_script('ls -la /remote/path\n# note\n\n-rm "a file.txt"\nln -s a b\nchmod 600 x')
    assert commands == [
        Command(1, "ls -la /remote/path", "ls", frozenset("la"), ("/remote/path",)),
        Command(4, '-rm "a file.txt"', "rm", frozenset(), ("a file.txt",), ignore_errors=True),
        Command(5, "ln -s a b", "ln", frozenset("s"), ("a", "b")),
        Command(6, "chmod 600 x", "chmod", frozenset(), ("600", "x")),
    ]


@pytest.mark.parametrize(("script", "message"), [
    ("lss", "Line 1: unknown command `lss`"),
    ("ls\nrm", "Line 2: `rm` takes 1 argument"),
    ("ls -z", "Line 1: `ls` has no option -z"),
    ('cd "unclosed', "Line 1: No closing quotation"),
    ("-", "Line 1: no command after `-`"),
    ("rename a", "takes 2 argument"),
])
def test_a_bad_script_is_refused_naming_the_line(script: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_script(script)


def test_ssh_options_are_typed_and_unknown_ones_refused() -> None:
    assert parse_ssh_options("Compression=yes\nconnecttimeout 7\n# x") == {"Compression": True, "ConnectTimeout": 7}
    with pytest.raises(ValueError, match="Line 1: unknown option `ProxyCommand`"):
        parse_ssh_options("ProxyCommand=nc evil 22")
    with pytest.raises(ValueError, match="Compression is yes or no"):
        parse_ssh_options("Compression=maybe")


def test_host_keys_are_read_from_keyscan_and_known_hosts_lines() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (plain,) = parse_host_keys(key)
    (known,) = parse_host_keys(f"[127.0.0.1]:2222 {key} comment")
    assert plain.asbytes() == known.asbytes() and plain.get_name() == "ssh-ed25519"
    with pytest.raises(ValueError, match="Line 1: the ssh-ed25519 key cannot be read"):
        parse_host_keys("ssh-ed25519 AAAAnotakey")
    with pytest.raises(ValueError, match="expected `<type> <base64 key>`"):
        parse_host_keys("hello")


def test_private_keys_must_be_readable_and_without_a_passphrase() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption()).decode()
    assert load_private_key(pem).get_name() == "ssh-ed25519"
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                               serialization.BestAvailableEncryption(b"pass")).decode()
    with pytest.raises(ValueError, match="passphrase"):
        load_private_key(locked)
    with pytest.raises(ValueError, match="OpenSSH or PEM form"):
        load_private_key("not a key")


@given(st.text(max_size=400))
def test_any_script_text_gives_commands_or_a_value_error(script: str) -> None:
    try:
        commands = parse_script(script)
    except ValueError as exc:
        assert str(exc).startswith(("Line ", "The script", "At most"))
        return
    for command in commands:
        assert command.name in COMMANDS
        allowed, fewest, most = COMMANDS[command.name]
        assert fewest <= len(command.args) <= most and command.flags <= set(allowed)


@given(st.text(max_size=300))
def test_any_options_text_gives_options_or_a_value_error(text: str) -> None:
    try:
        parse_ssh_options(text)
    except ValueError as exc:
        assert str(exc).startswith("Line ")


@given(st.text(max_size=300))
def test_any_host_key_text_gives_keys_or_a_value_error(text: str) -> None:
    try:
        parse_host_keys(text)
    except ValueError as exc:
        assert str(exc).startswith("Line ")


@given(st.text(max_size=300))
def test_any_private_key_text_gives_a_key_or_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\n" + text)
