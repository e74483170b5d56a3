"""Hypothesis strategies shared by the tests of parsers that see raw input."""

from __future__ import annotations

import json

from hypothesis import strategies as st

scalars = (st.none() | st.booleans() | st.integers(-(10**40), 10**40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
# Text built from JSON's own punctuation: mostly broken JSON, now and then deeply nested.
json_ish = st.text(alphabet='[]{}",:\\0123456789.eE+-truefalsnul \n\t\u00e9\ud7ff', max_size=400)
# What a hostile body may look like: anything, JSON's punctuation, or valid JSON.
bodies = st.one_of(
    st.binary(max_size=300),
    json_ish.map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
)
