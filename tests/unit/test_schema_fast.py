"""The batch fast paths of request validation agree with pydantic on generated bodies.

`serve.validation.decode_batch` (msgspec, from the bytes) and `serve.validation.fast_rows`
(column checks on the parsed JSON) either accept a batch, with exactly the values pydantic
would store, or decline and pydantic decides (so 422 messages are pydantic's). Property:
whenever a fast path accepts, pydantic accepts too and yields the same values; plainly valid
batches (what clients send) are always accepted by both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from churn import schema
from churn.schema import Kind
from serve import api_models, validation
from serve.rows import REQUEST_COLUMNS, Batch, customer_ids, frame, frame_of_requests

ODD: list[Any] = [None, True, False, "", " ", "Yes", "1", 1, 0, -1, 1.5, 8.0, [], {}, 2**60]


def valid_value(column: schema.Column) -> st.SearchStrategy[Any]:
    if column.kind is Kind.CATEGORY:
        return st.sampled_from(column.categories)
    if column.kind in (Kind.FLAG, Kind.INTEGER):
        return st.integers(int(column.minimum or 0), int(column.maximum or 1))
    if column.kind is Kind.NUMBER:
        numbers = st.floats(0, 1e7, allow_nan=False) | st.integers(0, 10**6)
        return numbers | st.none() if column.nullable else numbers
    return st.none() | st.text(max_size=64)  # customerID


def any_value(column: schema.Column) -> st.SearchStrategy[Any]:
    near = st.floats(-10, 100, allow_nan=False) | st.integers(-3, 100) | st.text(max_size=3)
    if column.kind is Kind.ID:
        near = near | st.text(min_size=60, max_size=70)
    return valid_value(column) | st.sampled_from(ODD) | near


@st.composite
def valid_row(draw: st.DrawFn) -> dict[str, Any]:
    row = {c.name: draw(valid_value(c)) for c in REQUEST_COLUMNS}
    if draw(st.booleans()):
        del row[schema.ID_COLUMN]  # optional
    return row


@st.composite
def any_row(draw: st.DrawFn) -> Any:
    row: dict[str, Any] = {}
    for c in REQUEST_COLUMNS:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # missing
        row[c.name] = draw(any_value(c) if choice == 1 else valid_value(c))
    if draw(st.integers(0, 9)) == 0:
        row[draw(st.sampled_from(["Churn", "extra", "tenure "]))] = 1
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([None, 1, "row", [row]]))
    return row


def pydantic_rows(instances: list[Any]) -> list[Any] | None:
    try:
        return validation._ROWS.validate_python(instances)
    except ValidationError:
        return None


def values(row: Any) -> dict[str, tuple[type, Any]]:
    return {c.name: (type(v := getattr(row, c.name)), v) for c in REQUEST_COLUMNS}


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(any_row(), min_size=1, max_size=6))
def test_the_fast_path_accepts_only_what_pydantic_accepts(instances: list[Any]) -> None:
    fast = validation.fast_rows(instances)
    slow = pydantic_rows(instances)
    if fast is None:
        return
    assert slow is not None, "the fast path accepted a batch pydantic refuses"
    assert [values(r) for r in fast] == [values(r) for r in slow]


@FAST
@given(st.lists(any_row(), min_size=0, max_size=6))
def test_the_decoder_accepts_only_what_pydantic_accepts(instances: list[Any]) -> None:
    fast = validation.decode_batch(orjson.dumps({"instances": instances}), 5)
    if fast is None:
        return
    assert 1 <= len(instances) <= 5
    slow = pydantic_rows(instances)
    assert slow is not None, "the decoder accepted a batch pydantic refuses"
    assert [values(r) for r in fast] == [values(r) for r in slow]


@FAST
@given(st.lists(valid_row(), min_size=1, max_size=20))
def test_plainly_valid_batches_take_the_fast_path(instances: list[dict[str, Any]]) -> None:
    raw = orjson.dumps({"instances": instances})
    body = orjson.loads(raw)["instances"]  # as clients send
    fast = validation.fast_rows(body)
    slow = pydantic_rows(body)
    assert slow is not None
    assert fast is not None
    assert [values(r) for r in fast] == [values(r) for r in slow]
    decoded = validation.decode_batch(raw, 20)
    assert decoded is not None
    assert [values(r) for r in decoded] == [values(r) for r in slow]
    pd.testing.assert_frame_equal(decoded.frame(), fast.frame())
    # The frame built from the columns is the one the rows would give.
    pd.testing.assert_frame_equal(fast.frame(), frame(slow))
    pd.testing.assert_frame_equal(fast.frame(), frame(list(fast)))
    assert list(customer_ids(fast)) == [r.customerID for r in slow]
    mask = [i % 3 == 0 for i in range(len(fast))]
    assert list(fast.take(mask)) == [r for r, keep in zip(fast, mask, strict=True) if keep]
    halves = Batch.concat([fast, fast])
    pd.testing.assert_frame_equal(
        halves.frame(), pd.concat([frame(slow), frame(slow)], ignore_index=True)
    )
    # The prediction log's one frame of many requests: columns joined, or rows chained.
    both = pd.concat([frame(slow), frame(slow)], ignore_index=True)
    pd.testing.assert_frame_equal(frame_of_requests([fast, fast]), both)
    pd.testing.assert_frame_equal(frame_of_requests([fast, slow]), both)


@FAST
@given(st.lists(any_row(), min_size=1, max_size=6))
def test_parse_answers_as_pydantic_does(instances: list[Any]) -> None:
    """Through `parse`: the same rows or the same error list, fast path or not."""
    body = orjson.dumps({"instances": instances})
    slow = pydantic_rows(instances)
    try:
        rows, batch = validation.parse(body, 100)
    except validation.RequestError as exc:
        assert slow is None
        assert exc.errors  # worded from pydantic's errors, as before
        return
    assert batch
    assert slow is not None
    assert [values(r) for r in rows] == [values(r) for r in slow]


def test_edge_values() -> None:
    base = dict(api_models.EXAMPLE_ROWS[0])
    # (field, value, fast_rows takes it, decode_batch takes it)
    cases: list[tuple[str, Any, bool, bool]] = [
        ("tenure", 8.0, False, False),  # pydantic converts: its job
        ("tenure", True, False, False),
        ("SeniorCitizen", 2, False, False),
        ("tenure", -1, False, False),
        ("tenure", 72, True, True),
        ("MonthlyCharges", 5, True, True),  # an int for a number: stored as float
        ("MonthlyCharges", -0.01, False, False),
        ("MonthlyCharges", 2**60, False, True),  # its float, as pydantic stores it
        ("MonthlyCharges", "5", False, False),
        ("TotalCharges", None, True, True),
        ("TotalCharges", "", False, False),  # blank is null: pydantic's conversion
        ("Contract", "Monthly", False, False),
        ("Contract", "one year", False, False),
        ("Contract", ["One year"], False, False),
        ("customerID", "x" * 64, True, True),
        ("customerID", "\U0001f600" * 64, True, True),  # characters, not bytes
        ("customerID", "x" * 65, False, False),
        ("customerID", 7, False, False),
        ("customerID", None, True, True),
        ("Churn", "No", False, False),
    ]
    for name, value, fast, decoded in cases:
        row = {**base, name: value}
        slow = pydantic_rows([row])
        for taken, got in (
            (fast, validation.fast_rows([row])),
            (decoded, validation.decode_batch(orjson.dumps({"instances": [row]}), 1)),
        ):
            assert (got is not None) is taken, (name, value)
            if got is not None:
                assert slow is not None
                assert values(got[0]) == values(slow[0])
    missing = {k: v for k, v in base.items() if k != "tenure"}
    assert validation.decode_batch(orjson.dumps({"instances": [missing]}), 1) is None
    no_id = {k: v for k, v in base.items() if k != schema.ID_COLUMN}
    assert list(customer_ids(validation.decode_batch(orjson.dumps({"instances": [no_id]}), 1))) == [
        None
    ]
    two = orjson.dumps({"instances": [base, base]})
    assert validation.decode_batch(two, 1) is None and validation.decode_batch(two, 2) is not None
    got = validation.fast_rows([{**base, "MonthlyCharges": 5}])
    assert got is not None and type(got[0].MonthlyCharges) is float
    assert validation.fast_rows([]) is None
    assert np.isnan(
        frame(validation.fast_rows([{**base, "TotalCharges": None}]) or [])["TotalCharges"][0]
    )


def test_rows_decode_to_the_checked_columns_in_any_key_order() -> None:
    """The decoder's struct has the fields in schema order (customerID first) and transposes its
    rows by zip: the columns are `FEATURE_NAMES` in order, the IDs apart, as `fast_rows` gives
    them, whatever order a client sends the keys in."""
    rows = [{**api_models.EXAMPLE_ROWS[i % 2], "tenure": i % 70} for i in range(37)]
    rows[3] = {**rows[3], "TotalCharges": None}
    del rows[5]["customerID"]
    rows[6] = dict(reversed(list(rows[6].items())))  # keys in the opposite order
    batch = validation.decode_batch(orjson.dumps({"instances": rows}), 100)
    assert batch is not None and len(batch) == len(rows)
    expected = validation.fast_rows(rows)
    assert expected is not None
    assert batch.columns == expected.columns
    assert batch.ids == expected.ids
    assert batch.ids[5] is None
    assert batch.by_name()["tenure"] == tuple(i % 70 for i in range(37))


def test_the_decoder_on_raw_json() -> None:
    """Bodies only raw text can spell: the decoder takes them exactly when, and as, orjson +
    pydantic do (duplicate keys: the last wins; escapes; number spellings; bad unicode)."""
    row = orjson.dumps(api_models.EXAMPLE_ROWS[0]).decode()[1:-1]  # the fields, without braces
    cases: list[tuple[str, bool]] = [
        ('{"instances": [{ROW}]}', True),
        ('  {\n"instances" : [ {ROW} ] }\n', True),
        ('{"instances": [{ROW, "gender": "Male"}]}', True),  # duplicate: the last wins
        ('{"instances": [{ROW}], "instances": []}', False),  # ... an empty batch
        ('{"instances": [{ROW, "Contract": "One\\u0020year"}]}', True),  # escaped
        ('{"instances": [{ROW, "customerID": "\\ud83d\\ude00"}]}', True),  # a pair
        ('{"instances": [{ROW, "customerID": "\\ud800"}]}', False),  # lone surrogate
        ('{"instances": [{ROW, "tenure": 1E1}]}', False),  # pydantic converts 10.0
        ('{"instances": [{ROW, "tenure": 10.0}]}', False),
        ('{"instances": [{ROW, "MonthlyCharges": 1E1}]}', True),
        ('{"instances": [{ROW, "MonthlyCharges": 1e400}]}', False),  # not a double
        ('{"instances": [{ROW, "MonthlyCharges": 123456789012345678901234567890}]}', True),
        ('{"instances": [{ROW, "MonthlyCharges": NaN}]}', False),
        ('{"instances": [{ROW}], "extra": 1}', False),
        ('{"instances": [{ROW}]} x', False),
        ('{"instances": [{ROW}, null]}', False),
        ("{ROW}", False),  # one customer, no wrapper: the other path
    ]
    for text, accepted in cases:
        raw = text.replace("ROW", row).encode()
        got = validation.decode_batch(raw, 10)
        assert (got is not None) is accepted, text
        if got is None:
            continue
        slow = pydantic_rows(orjson.loads(raw)["instances"])
        assert slow is not None
        assert [values(r) for r in got] == [values(r) for r in slow]
        rows, batch = validation.parse(raw, 10)
        assert batch and rows is not got and rows == got
    bom = b"\xef\xbb\xbf" + cases[0][0].replace("ROW", row).encode()
    assert validation.decode_batch(bom, 10) is None
    assert validation.decode_batch(b'{"instances": [{"customerID": "\xff"}]}', 10) is None


def test_the_frame_without_pandas_private_constructor(monkeypatch: Any) -> None:
    rows = [dict(r) for r in api_models.EXAMPLE_ROWS] + [
        {**api_models.EXAMPLE_ROWS[0], "TotalCharges": None}
    ]
    batch = validation.fast_rows(rows)
    assert batch is not None
    fast = batch.frame()

    def gone(*_a: Any, **_k: Any) -> None:
        raise AttributeError("_from_arrays")

    monkeypatch.setattr(pd.DataFrame, "_from_arrays", gone, raising=False)
    public = batch.frame()
    pd.testing.assert_frame_equal(fast, public)
    pd.testing.assert_frame_equal(fast, frame(list(batch)))
