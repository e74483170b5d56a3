"""Checks on the text an FTP connection sends on its control connection."""

from __future__ import annotations


def has_line_break(value: str) -> bool:
    """FTP commands end at a line break: a value with one would smuggle in a second command."""
    return "\r" in value or "\n" in value or "\0" in value


def parse_mlst(reply: str) -> dict[str, str]:
    """The facts of an ``MLST`` reply (RFC 3659 7.2), lower-cased names; ``{}`` when the reply has none.

    The reply is ``250-...``, then one line starting with a space: ``fact=value;...; pathname``,
    then ``250 ...``. A value may hold anything but ``;``; the pathname follows the first space.
    """
    for line in reply.splitlines():
        if not line.startswith(" "):
            continue
        facts_text, _, _pathname = line[1:].partition(" ")
        facts: dict[str, str] = {}
        for fact in facts_text.split(";"):
            name, sep, value = fact.partition("=")
            if sep and name:
                facts[name.lower()] = value
        return facts
    return {}
