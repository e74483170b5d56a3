"""The FTP reply parser (MLST facts) and the line-break check: examples and Hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connections.ftp_parsing import has_line_break, parse_mlst


def test_mlst_facts_are_read_from_the_middle_line() -> None:
    reply = "250-Listing /data/current.csv\r\n type=file;size=107;Modify=20261201120000; /data/current.csv\r\n250 End."
    assert parse_mlst(reply) == {"type": "file", "size": "107", "modify": "20261201120000"}
    assert parse_mlst("250 nothing") == {}


def test_line_breaks_and_nuls_are_found() -> None:
    assert has_line_break("a\r\nDELE b") and has_line_break("a\nb") and has_line_break("a\0")
    assert not has_line_break("/data/current file.csv")


@given(st.text(max_size=400))
def test_any_reply_gives_a_dict_of_lower_case_fact_names(reply: str) -> None:
    facts = parse_mlst(reply)
    assert all(name and name == name.lower() and ";" not in value for name, value in facts.items())
