"""encoding_notes: what FeatureSpace.encode changes in a table it was not fitted on."""

from __future__ import annotations

import re

import numpy as np

from advsec.datasets.synthetic import make_flows
from advsec.features.coverage import encoding_notes
from advsec.features.space import FeatureSpace


def _fitted():
    table, schema = make_flows(1200, seed=3)
    train = table.iloc[:800].reset_index(drop=True)
    return FeatureSpace(schema).fit(train), train, table.iloc[800:].reset_index(drop=True)


def test_no_note_on_the_training_table():
    space, train, _ = _fitted()
    assert encoding_notes(space, train) == []


def test_out_of_range_values_and_unseen_categories_are_counted_from_their_first_row():
    space, train, test = _fitted()
    num = next(f for f in space.schema if f.is_numeric and f.kind.value == "integer")
    cat = next(f for f in space.schema if f.kind.value == "categorical")
    t = test.copy()
    t = t[(t[num.name] >= train[num.name].min()) & (t[num.name] <= train[num.name].max())]
    t = t.reset_index(drop=True)
    assert not [n for n in encoding_notes(space, t) if n.startswith(f"column {num.name!r}")]
    hi = int(train[num.name].max())
    t.loc[[4, 9, 11], num.name] = [hi + 1, hi + 10, hi]  # two above the fitted range, one at it
    t[cat.name] = t[cat.name].astype(object)
    t.loc[[2, 7], cat.name] = ["never-seen", "never-seen"]
    t.loc[13, cat.name] = None
    notes = encoding_notes(space, t)
    (n_note,) = [n for n in notes if n.startswith(f"column {num.name!r}")]
    assert re.search(r": 2 record\(s\) outside .* \(first: row 5, ", n_note)
    (c_note,) = [n for n in notes if n.startswith(f"column {cat.name!r}")]
    assert ": 3 record(s) with a category the model never saw (2 distinct; first: row 3, " \
           "'never-seen')" in c_note
    # independently: exactly the flagged numeric records encode to the end of the range
    x = space.encode(t)
    a = space.blocks_[[f.name for f, _, _ in space.blocks_].index(num.name)][1]
    at_top = np.flatnonzero(x[:, a] == 1.0)
    assert {4, 9, 11} <= set(at_top.tolist())
    # and the unseen / empty categories are the records whose <other> slot is set
    _, _, cb = space.blocks_[[f.name for f, _, _ in space.blocks_].index(cat.name)]
    assert np.flatnonzero(x[:, cb - 1] == 1.0).tolist() == [2, 7, 13]


def test_fractional_values_of_an_integer_feature_are_noted_and_fail_validity():
    space, train, test = _fitted()
    num = next(f for f in space.schema if f.is_numeric and f.kind.value == "integer")
    t = test.copy()
    t[num.name] = t[num.name].astype(float)
    lo = float(train[num.name].min())
    t.loc[[3, 8], num.name] = [lo + 0.5, lo + 1.25]
    notes = [n for n in encoding_notes(space, t) if n.startswith(f"column {num.name!r}")]
    assert any(re.search(r": 2 record\(s\) with a fractional value of an integer feature "
                         r"\(first: row 4, ", n) for n in notes), notes
    # whole numbers held as floats are no fractions
    assert encoding_notes(space, test.assign(**{num.name: test[num.name].astype(float)})) == \
        encoding_notes(space, test)
    # what the note says: the exported record is not the one scored (decoding rounds it)
    decoded = space.decode(space.encode(t))
    assert float(decoded.loc[3, num.name]).is_integer()
    assert float(decoded.loc[3, num.name]) != lo + 0.5
