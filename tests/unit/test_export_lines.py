"""An export line reads back as exactly the entry it was written from, whatever its kind and
payload hold; a line edited in any way reads back as nothing."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from lockstep.evidence.export import entry_line, parse_entry_line

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
payloads = st.dictionaries(texts, st.one_of(texts, st.integers(), st.none()), max_size=4)
entries = st.tuples(
    st.integers(1, 10**9),
    st.just("2026-06-01T12:00:00.000123Z"),
    texts.filter(bool),
    payloads.map(
        lambda p: json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    ),
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)


@given(entries)
def test_a_line_reads_back_as_its_entry(entry: tuple[int, str, str, str, str, str]) -> None:
    line = entry_line(entry)
    assert parse_entry_line(line) == entry
    assert json.loads(line)["seq"] == entry[0]


@given(entries, st.integers(0, 400), st.sampled_from([" ", '"', "}", "x"]))
def test_an_edited_line_is_not_an_entry_or_not_the_same(
    entry: tuple[int, str, str, str, str, str], at: int, extra: str
) -> None:
    line = entry_line(entry)
    at = at % len(line)
    edited = line[:at] + extra + line[at:]
    assert parse_entry_line(edited) != entry
