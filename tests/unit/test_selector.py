"""Mango selector matcher and CouchDB collation (pouchsync_sync.selector)."""

from __future__ import annotations

import copy
import functools
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouchsync_sync.errors import BadRequest
from pouchsync_sync.selector import collate, compile_selector, matches, validate_selector

# Hypothesis examples per property: enough to keep the suite fast yet find regressions.
_EXAMPLES = 100

DOC = {
    "_id": "doc-1",
    "name": "Ann",
    "age": 31,
    "score": 7.5,
    "active": True,
    "nothing": None,
    "tags": ["red", "green", "blue"],
    "nums": [1, 5, 9],
    "empty": [],
    "owner": {"name": "bob", "address": {"city": "Omaha", "zip": "68102"}},
    "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
    "meta": {"dotted.key": 1, "$dollar": 2},
    "text": "Hello World",
}


def check(selector: dict[str, Any], doc: Any, expected: bool) -> None:
    assert compile_selector(selector)(doc) is expected, (selector, doc)
    assert matches(selector, doc) is expected


# --------------------------------------------------------------------------- basics

BASICS = [
    ({}, True),
    ({"name": "Ann"}, True),
    ({"name": "ann"}, False),
    ({"name": "Ann", "age": 31}, True),
    ({"name": "Ann", "age": 32}, False),
    ({"owner": {"name": "bob"}}, True),           # nested object = sub-selector on owner.name
    ({"owner.name": "bob"}, True),
    ({"owner.address.city": "Omaha"}, True),
    ({"owner": {"address": {"city": "Omaha", "zip": "68102"}}}, True),
    ({"owner": {"address.city": "Omaha"}}, True),
    ({"owner.address": {"city": {"$gt": "A"}}}, True),
    ({"owner": {"address": {"city": {"$eq": "Lincoln"}}}}, False),
    ({"owner.missing.deep": {"$exists": False}}, True),
    ({"tags": ["red", "green", "blue"]}, True),    # whole-array equality
    ({"tags": ["red", "blue", "green"]}, False),
    ({"tags": "red"}, False),                      # no implicit element matching (unlike MongoDB)
    ({"tags.0": "red"}, True),                     # numeric segment indexes arrays
    ({"tags.2": "blue"}, True),
    ({"tags.3": {"$exists": False}}, False),       # index out of range is a bad path
    ({"points.1.x": 3}, True),
    ({"points.x": 1}, False),
    ({"meta.dotted\\.key": 1}, True),              # escaped dot
    ({"meta.\\$dollar": 2}, True),                 # escaped leading $
    ({"nothing": None}, True),
    ({"nothing": False}, False),
    ({"active": True}, True),
    ({"active": 1}, False),                        # booleans are not numbers
    ({"age": 31.0}, True),                         # 31 == 31.0
    ({"age": True}, False),
    ({"score": {"$gt": 7, "$lt": 8}}, True),       # implicit $and of operators
    ({"score": {"$gt": 7, "$lt": 7.5}}, False),
    ({"owner": {"name": "bob", "$exists": True}}, True),
    ({"empty": []}, True),
    ({"meta": {}}, False),                         # {} under a field is equality with {}
]


@pytest.mark.parametrize(("selector", "expected"), BASICS)
def test_basics(selector: dict[str, Any], expected: bool) -> None:
    check(selector, DOC, expected)


def test_empty_object_value_is_equality_with_empty_object() -> None:
    check({"a": {}}, {"a": {}}, True)
    check({"a": {}}, {"a": {"b": 1}}, False)


def test_path_through_scalar_matches_nothing() -> None:
    check({"age.x": {"$exists": False}}, DOC, False)
    check({"age.x": {"$ne": 1}}, DOC, False)
    check({"tags.x": {"$exists": False}}, DOC, False)
    check({"tags.-1": {"$exists": False}}, DOC, False)


def test_compiled_matcher_is_reusable_and_does_not_mutate_input() -> None:
    selector = {"age": {"$gte": 30}, "$or": [{"name": "Ann"}, {"name": "Bob"}],
                "tags": {"$all": ["red"]}}
    before = copy.deepcopy(selector)
    doc_before = copy.deepcopy(DOC)
    matcher = compile_selector(selector)
    assert [matcher(DOC), matcher({"age": 40, "name": "Bob", "tags": ["red"]}),
            matcher({"age": 20}), matcher(DOC)] == [True, True, False, True]
    assert selector == before and DOC == doc_before


def test_non_dict_documents_never_raise() -> None:
    matcher = compile_selector({"a": {"$gt": 1}})
    for doc in [None, 1, "x", [], [1, 2], {"a": object()}, {"a": float("nan")}]:
        assert matcher(doc) in (True, False)


# --------------------------------------------------------------------------- operators

OPERATORS = [
    # $eq / $ne
    ({"age": {"$eq": 31}}, True),
    ({"age": {"$eq": "31"}}, False),
    ({"owner": {"$eq": {"address": {"zip": "68102", "city": "Omaha"}, "name": "bob"}}}, True),
    ({"owner": {"$eq": {"name": "bob"}}}, False),
    ({"points": {"$eq": [{"y": 2, "x": 1}, {"x": 3, "y": 4.0}]}}, True),
    ({"age": {"$ne": 30}}, True),
    ({"age": {"$ne": 31}}, False),
    ({"active": {"$ne": 1}}, True),
    ({"nothing": {"$ne": None}}, False),
    # ordering, including across types by collation
    ({"age": {"$gt": 30}}, True),
    ({"age": {"$gt": 31}}, False),
    ({"age": {"$gte": 31}}, True),
    ({"age": {"$lt": 31.5}}, True),
    ({"age": {"$lte": 31}}, True),
    ({"age": {"$lt": 31}}, False),
    ({"age": {"$lt": "0"}}, True),                 # numbers < strings
    ({"age": {"$gt": True}}, True),                # true < numbers
    ({"age": {"$gt": None}}, True),
    ({"name": {"$gt": 1000}}, True),
    ({"name": {"$lt": []}}, True),                 # strings < arrays
    ({"name": {"$gt": "ann"}}, True),              # "ann" < "Ann" (lowercase first)
    ({"name": {"$lt": "anna"}}, True),             # case-insensitive first: "Ann" < "anna"
    ({"name": {"$lt": "B"}}, True),
    ({"tags": {"$gt": ["red"]}}, True),            # a prefix sorts first
    ({"tags": {"$gt": ["red", "z"]}}, False),      # arrays element-wise: "green" < "z"
    ({"tags": {"$lt": ["red", "z"]}}, True),
    ({"tags": {"$lt": ["pink"]}}, False),
    ({"tags": {"$lt": {}}}, True),                 # arrays < objects
    ({"owner": {"$gt": {"name": "c"}}}, False),    # objects member by member: "bob" < "c"
    ({"owner": {"$gt": {"address": "z"}}}, True),  # "name" > "address"
    ({"nothing": {"$lt": False}}, True),
    ({"active": {"$lte": True}}, True),
    # $exists
    ({"age": {"$exists": True}}, True),
    ({"age": {"$exists": False}}, False),
    ({"nope": {"$exists": False}}, True),
    ({"nope": {"$exists": True}}, False),
    ({"nothing": {"$exists": True}}, True),        # null exists
    # $type
    ({"nothing": {"$type": "null"}}, True),
    ({"active": {"$type": "boolean"}}, True),
    ({"active": {"$type": "number"}}, False),
    ({"age": {"$type": "number"}}, True),
    ({"score": {"$type": "number"}}, True),
    ({"name": {"$type": "string"}}, True),
    ({"tags": {"$type": "array"}}, True),
    ({"owner": {"$type": "object"}}, True),
    ({"owner": {"$type": "array"}}, False),
    # $in / $nin
    ({"age": {"$in": [1, 31, "x"]}}, True),
    ({"age": {"$in": [1, 2]}}, False),
    ({"age": {"$in": []}}, False),
    ({"tags": {"$in": ["blue", "pink"]}}, True),   # any element of an array field
    ({"tags": {"$in": ["pink"]}}, False),
    ({"tags": {"$in": [["red", "green", "blue"]]}}, False),  # elements, not the whole array
    ({"active": {"$in": [1]}}, False),
    ({"age": {"$nin": [1, 2]}}, True),
    ({"age": {"$nin": [31]}}, False),
    ({"age": {"$nin": []}}, True),
    ({"tags": {"$nin": ["pink"]}}, True),
    ({"tags": {"$nin": ["red"]}}, False),
    # $size
    ({"tags": {"$size": 3}}, True),
    ({"tags": {"$size": 2}}, False),
    ({"empty": {"$size": 0}}, True),
    ({"name": {"$size": 3}}, False),               # not an array
    # $mod
    ({"age": {"$mod": [10, 1]}}, True),
    ({"age": {"$mod": [10, 2]}}, False),
    ({"age": {"$mod": [-10, 1]}}, True),           # remainder takes the sign of the dividend
    ({"score": {"$mod": [2, 1]}}, False),          # floats never match
    ({"active": {"$mod": [1, 0]}}, False),         # booleans are not integers
    ({"name": {"$mod": [2, 0]}}, False),
    # $regex (re.search)
    ({"name": {"$regex": "^A"}}, True),
    ({"name": {"$regex": "nn"}}, True),
    ({"name": {"$regex": "^a"}}, False),
    ({"name": {"$regex": "(?i)^a"}}, True),
    ({"age": {"$regex": "3"}}, False),             # only strings
    # $beginsWith
    ({"text": {"$beginsWith": "Hell"}}, True),
    ({"text": {"$beginsWith": "hell"}}, False),
    ({"age": {"$beginsWith": "3"}}, False),
    # $all
    ({"tags": {"$all": ["red", "blue"]}}, True),
    ({"tags": {"$all": ["red", "pink"]}}, False),
    ({"tags": {"$all": []}}, False),
    ({"tags": {"$all": [["red", "green", "blue"]]}}, True),  # a single list arg may equal the field
    ({"name": {"$all": ["Ann"]}}, False),
    ({"nums": {"$all": [1.0, 9]}}, True),
    # $elemMatch / $allMatch / $keyMapMatch
    ({"nums": {"$elemMatch": {"$gt": 8}}}, True),
    ({"nums": {"$elemMatch": {"$gt": 9}}}, False),
    ({"nums": {"$elemMatch": {"$gt": 2, "$lt": 5}}}, False),
    ({"nums": {"$elemMatch": {"$gt": 2, "$lt": 6}}}, True),
    ({"points": {"$elemMatch": {"x": 3, "y": 4}}}, True),
    ({"points": {"$elemMatch": {"x": 1, "y": 4}}}, False),
    ({"points": {"$elemMatch": {"x": {"$exists": True}}}}, True),
    ({"empty": {"$elemMatch": {"$gt": 0}}}, False),
    ({"name": {"$elemMatch": {"$gt": 0}}}, False),
    ({"nums": {"$allMatch": {"$gt": 0}}}, True),
    ({"nums": {"$allMatch": {"$gt": 1}}}, False),
    ({"empty": {"$allMatch": {"$gt": 0}}}, False),  # CouchDB: an empty array never all-matches
    ({"points": {"$allMatch": {"x": {"$type": "number"}}}}, True),
    ({"meta": {"$keyMapMatch": {"$eq": "dotted.key"}}}, True),
    ({"meta": {"$keyMapMatch": {"$regex": "^z"}}}, False),
    ({"tags": {"$keyMapMatch": {"$eq": "0"}}}, False),
    # combinators
    ({"$and": [{"age": 31}, {"name": "Ann"}]}, True),
    ({"$and": [{"age": 31}, {"name": "Bob"}]}, False),
    ({"$and": []}, True),
    ({"$or": [{"age": 1}, {"name": "Ann"}]}, True),
    ({"$or": [{"age": 1}, {"name": "Bob"}]}, False),
    ({"$or": []}, True),                           # CouchDB: an empty $or matches
    ({"$nor": [{"age": 1}, {"name": "Bob"}]}, True),
    ({"$nor": [{"age": 1}, {"name": "Ann"}]}, False),
    ({"$not": {"age": 31}}, False),
    ({"$not": {"age": 30}}, True),
    ({"age": {"$not": {"$gt": 40}}}, True),
    ({"age": {"$not": {"$size": 1}}}, True),
    ({"age": {"$or": [30, 31]}}, True),           # bare values inside a field's $or
    ({"age": {"$and": [{"$gt": 30}, {"$lt": 32}]}}, True),
    ({"age": {"$and": [{"$gt": 30}, {"$lt": 31}]}}, False),
    ({"owner": {"$or": [{"name": "x"}, {"address.city": "Omaha"}]}}, True),
    ({"$or": [{"$and": [{"age": {"$gt": 30}}, {"active": True}]}, {"nope": 1}]}, True),
    ({"nums": {"$elemMatch": {"$or": [5, 6]}}}, True),
]


@pytest.mark.parametrize(("selector", "expected"), OPERATORS)
def test_operators(selector: dict[str, Any], expected: bool) -> None:
    check(selector, DOC, expected)


@pytest.mark.parametrize(("value", "expected"), [
    ("é", True),                 # canonically equivalent to the "e\u0301" argument
    ("e\u0301", True),
    ("K", True),                 # KELVIN SIGN argument decomposes to "K"
    ("k", False),
    (2, True), (2.0, True),      # numbers by value
    (True, True), (1, False),    # true is not 1
    (False, False), (None, True),
    ({"b": [3], "a": 2}, True),  # composite arguments, member order ignored
    ({"a": 2}, False),
    ([[3, {"a": 2}]], True),     # ... and an item of an array field may be one
    ([3, {"a": 2}], False),      # the array itself is not compared
    (["x", "é"], True),          # an array field matches when one item does
    (["x", "y"], False),
])
def test_in_with_mixed_arguments(value: Any, expected: bool) -> None:
    args = ["e\u0301", "\u212a", 2, True, None, {"a": 2, "b": [3]}, [3, {"a": 2}], float("nan")]
    check({"f": {"$in": args}}, {"f": value}, expected)
    check({"f": {"$nin": args}}, {"f": value}, not expected)


def test_long_in_list_of_ids() -> None:
    ids = [f"doc-{i:05d}" for i in range(5000)]
    matcher = compile_selector({"_id": {"$in": ids}})
    assert [matcher({"_id": "doc-04999"}), matcher({"_id": "doc-05000"}), matcher({})] \
        == [True, False, False]


# --------------------------------------------------------------------------- missing fields

# CouchDB: a condition on a missing field matches only when it is {"$exists": false};
# negations are pushed down to the terminals first, so $not/$nor of a field condition
# becomes its complementary operator and also fails on a missing field.
MISSING = [
    ({"a": 1}, False),
    ({"a": {"$eq": None}}, False),
    ({"a": {"$ne": 1}}, False),
    ({"a": {"$gt": None}}, False),
    ({"a": {"$lt": 1}}, False),
    ({"a": {"$in": [None]}}, False),
    ({"a": {"$nin": [1]}}, False),
    ({"a": {"$nin": []}}, False),
    ({"a": {"$exists": False}}, True),
    ({"a": {"$exists": True}}, False),
    ({"a": {"$type": "null"}}, False),
    ({"a": {"$size": 0}}, False),
    ({"a": {"$regex": ""}}, False),
    ({"a": {"$not": {"$exists": True}}}, True),
    ({"a": {"$not": {"$exists": False}}}, False),
    ({"$not": {"a": 1}}, False),
    ({"$not": {"a": {"$gt": 1}}}, False),
    ({"$not": {"a": {"$size": 1}}}, False),
    ({"a": {"$not": {"$eq": 1}}}, False),
    ({"$nor": [{"a": 1}]}, False),
    ({"$nor": [{"a": {"$exists": True}}]}, True),
    ({"$not": {"$not": {"a": {"$exists": False}}}}, True),
    ({"$or": [{"a": 1}, {"a": {"$exists": False}}]}, True),
    ({"a.b": {"$exists": False}}, True),
    ({"a": {"$exists": False}, "b": 2}, True),
    ({"a": {"$exists": False, "$ne": 1}}, False),   # implicit $and: $ne fails on missing
]


@pytest.mark.parametrize(("selector", "expected"), MISSING)
def test_missing_field_semantics(selector: dict[str, Any], expected: bool) -> None:
    check(selector, {"b": 2}, expected)


def test_not_is_logical_when_fields_exist() -> None:
    doc = {"a": 5}
    for inner in [{"a": 5}, {"a": {"$gt": 9}}, {"a": {"$in": [1, 5]}}, {"a": {"$type": "string"}},
                  {"a": {"$mod": [2, 1]}}, {"a": {"$exists": True}}]:
        assert matches({"$not": inner}, doc) is (not matches(inner, doc)), inner


def test_negated_elem_match_keeps_inner_not_logical() -> None:
    # {$not: {a: {$elemMatch: X}}} becomes {a: {$not: {$elemMatch: X}}} with X as written,
    # as in CouchDB's norm_negations.
    doc = {"a": [{"c": 1}]}
    assert matches({"a": {"$elemMatch": {"$not": {"b": 1}}}}, doc) is False
    assert matches({"$not": {"a": {"$elemMatch": {"$not": {"b": 1}}}}}, doc) is False
    assert matches({"$not": {"a": {"$elemMatch": {"b": 1}}}}, doc) is True


# --------------------------------------------------------------------------- _id

def test_id_conditions_compare_by_code_point() -> None:
    # CouchDB compares _id with raw (Erlang term) order: "Z" < "a" by code point,
    # whereas collation puts "a" before "Z".
    assert matches({"_id": {"$gt": "Z"}}, {"_id": "a"}) is True
    assert matches({"name": {"$gt": "Z"}}, {"name": "a"}) is False
    assert matches({"_id": {"$lt": "_design0"}}, {"_id": "_design/abc"}) is True
    assert matches({"_id": {"$in": ["x", "y"]}}, {"_id": "y"}) is True
    assert matches({"_id": {"$gt": None}}, {"_id": "a"}) is True
    assert matches({"_id": {"$gt": []}}, {"_id": "a"}) is True  # raw: arrays < strings


# --------------------------------------------------------------------------- collation

COUCH_ORDER = [
    None, False, True,
    -1e300, -5, 0, 0.5, 1, 2, 3.0, 4, 1e300,
    "", " ", "_", "-", ",", ";", ":", "!", "?", ".", "'", '"', "(", ")", "[", "]", "{", "}",
    "@", "*", "/", "\\", "&", "#", "%", "`", "^", "+", "<", "=", ">", "|", "~", "$",
    "0", "1", "10", "2", "9",
    "a", "A", "á", "Á", "aa", "aA", "Aa", "AA", "ab", "b", "B", "ba", "bb",
    "e", "E", "é", "É", "ea", "éa", "eb",
    "ss", "SS", "ß", "st", "z", "Z", "α", "Ω",
    [], ["a"], ["b"], ["b", "c"], ["b", "c", "a"], ["b", "d"], ["b", "d", "e"], [{}],
    {}, {"a": 1}, {"a": 2}, {"b": 1}, {"b": 2}, {"b": 2, "a": 1}, {"b": 2, "c": 2},
]


def test_collation_order_of_a_shuffled_mixed_list() -> None:
    rng = random.Random(7)
    for _ in range(20):
        values = COUCH_ORDER[:]
        rng.shuffle(values)
        assert sorted(values, key=functools.cmp_to_key(collate)) == COUCH_ORDER


def test_collation_pairs_follow_the_list() -> None:
    for i, a in enumerate(COUCH_ORDER):
        for j, b in enumerate(COUCH_ORDER):
            expected = (i > j) - (i < j)
            assert collate(a, b) == expected, (a, b)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (1, 1.0, 0),
    (True, 1, -1),
    (False, 0, -1),
    ("é", "e\u0301", 0),                 # canonically equivalent
    ("abc", "Abc", -1),
    ("Abc", "ABC", -1),
    ("ABC", "abc1", -1),
    ("abc1", "AbcZZZZZ", -1),
    ("a b", "a_b", -1),                  # punctuation is not ignored
    ("a-b", "aa", -1),
    ("fi", "\ufb01", -1),                # ligature after its letters
    ("ae", "æ", -1),
    ("æ", "af", -1),
    ("o", "ø", -1),
    ("ø", "p", -1),
    ("2", "\u0662", -1),                 # Arabic-Indic digit two sorts with 2
    ("\u0662", "3", -1),
    ("a", "a\x00", -1),                  # ignorable control: tie broken by code point
    ([1, 2], [1, 2.0], 0),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, -1),   # member order matters
    (float("nan"), -1e308, -1),
    (float("nan"), 10**400, -1),         # no float conversion of huge ints
    (10**400, 1e308, 1),
    (object, 1j, 1),                     # not JSON: still ordered, never raises
])
def test_collate_examples(a: Any, b: Any, expected: int) -> None:
    assert collate(a, b) == expected
    assert collate(b, a) == -expected


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from(list("aAbBzZ09 -_.~$éÉèßøæΣσςあ\u0301\x00")), max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["a", "b", "B", "c"]), inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=_EXAMPLES, deadline=None)
@given(st.lists(json_values, min_size=3, max_size=3))
def test_collate_is_a_total_order(values: list[Any]) -> None:
    a, b, c = values
    assert collate(a, a) == 0
    assert collate(a, b) == -collate(b, a)
    if collate(a, b) <= 0 and collate(b, c) <= 0:
        assert collate(a, c) <= 0
    ordered = sorted(values, key=functools.cmp_to_key(collate))
    assert all(collate(x, y) <= 0 for x, y in zip(ordered, ordered[1:]))


@settings(max_examples=_EXAMPLES, deadline=None)
@given(json_values, json_values)
def test_eq_agrees_with_collation_except_member_order(a: Any, b: Any) -> None:
    same = matches({"x": {"$eq": b}}, {"x": a})
    assert same is (not matches({"x": {"$ne": b}}, {"x": a}))
    if collate(a, b) == 0:
        assert same
    assert matches({"x": {"$lte": b}}, {"x": a}) is (collate(a, b) <= 0)
    assert matches({"x": {"$gt": b}}, {"x": a}) is (collate(a, b) > 0)


# --------------------------------------------------------------------------- invalid selectors

INVALID = [
    ([], "expected a JSON object"),
    ("name", "expected a JSON object"),
    (None, "expected a JSON object"),
    ({"$foo": 1}, "unknown operator '$foo'"),
    ({"a": {"$foo": 1}}, "unknown operator '$foo'"),
    ({"a": {"$gt": 1, "$bar": 2}}, "unknown operator '$bar'"),
    ({"$and": {"a": 1}}, "$and"),
    ({"$or": "x"}, "$or"),
    ({"$nor": 3}, "$nor"),
    ({"$and": [1]}, "$and"),
    ({"$not": [{"a": 1}]}, "$not"),
    ({"a": {"$not": 1}}, "$not"),
    ({"a": {"$in": 1}}, "$in"),
    ({"a": {"$in": {"x": 1}}}, "$in"),
    ({"a": {"$nin": "abc"}}, "$nin"),
    ({"a": {"$all": 1}}, "$all"),
    ({"a": {"$size": "3"}}, "invalid value for $size"),
    ({"a": {"$size": 1.5}}, "$size"),
    ({"a": {"$size": -1}}, "$size"),
    ({"a": {"$size": True}}, "$size"),
    ({"a": {"$mod": [0, 1]}}, "$mod"),
    ({"a": {"$mod": [2]}}, "$mod"),
    ({"a": {"$mod": [2, 1, 0]}}, "$mod"),
    ({"a": {"$mod": [2.5, 1]}}, "$mod"),
    ({"a": {"$mod": [2, "1"]}}, "$mod"),
    ({"a": {"$mod": [True, 0]}}, "$mod"),
    ({"a": {"$mod": 2}}, "$mod"),
    ({"a": {"$type": "integer"}}, "$type"),
    ({"a": {"$type": 1}}, "$type"),
    ({"a": {"$regex": 1}}, "$regex"),
    ({"a": {"$regex": "("}}, "$regex"),
    ({"a": {"$regex": "a{2,1}"}}, "$regex"),
    ({"a": {"$exists": "yes"}}, "$exists"),
    ({"a": {"$exists": 1}}, "$exists"),
    ({"a": {"$beginsWith": 1}}, "$beginsWith"),
    ({"a": {"$elemMatch": 1}}, "$elemMatch"),
    ({"a": {"$allMatch": [1]}}, "$allMatch"),
    ({"a": {"$keyMapMatch": "k"}}, "$keyMapMatch"),
    ({"a": {"$elemMatch": {"$foo": 1}}}, "$foo"),
    ({"a": {"$or": [{"b": {"$size": "x"}}]}}, "$size"),
    ({"$where": "1"}, "$where"),
    ({"$text": "x"}, "$text"),
    ({"a": {"$near": [0, 0]}}, "$near"),
    ({"$gt": 1}, "$gt"),                            # no field name
    ({"$elemMatch": {"a": 1}}, "$elemMatch"),
    ({"$and": [{"$eq": 1}]}, "$eq"),
    ({"": 1}, "field name"),
    ({"a..b": 1}, "field name"),
    ({"a.": 1}, "field name"),
    ({1: 1}, "field name"),
]


@pytest.mark.parametrize(("selector", "reason"), INVALID)
def test_invalid_selectors_raise_bad_request(selector: Any, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        compile_selector(selector)
    assert reason in info.value.reason
    assert info.value.status == 400
    with pytest.raises(BadRequest):
        validate_selector(selector)
    with pytest.raises(BadRequest):
        matches(selector, DOC)


def test_valid_selectors_validate() -> None:
    for selector, _ in BASICS + OPERATORS + MISSING:
        assert validate_selector(selector) is None


def test_deeply_nested_selector_is_bad_request() -> None:
    selector: dict[str, Any] = {"a": 1}
    for _ in range(5000):
        selector = {"$not": selector}
    with pytest.raises(BadRequest, match="nested too deeply"):
        compile_selector(selector)


def test_deeply_nested_document_does_not_match_instead_of_raising() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    other: Any = 2
    for _ in range(5000):
        other = [other]
    matcher = compile_selector({"a": {"$gt": other}})
    assert matcher({"a": deep}) is False


operator_names = st.sampled_from([
    "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists",
    "$type", "$in", "$nin", "$size", "$mod", "$regex", "$all", "$elemMatch", "$allMatch",
    "$keyMapMatch", "$beginsWith", "$foo", "$text"])
keys = st.one_of(operator_names, st.sampled_from(["a", "b", "a.b", "a.0", "", "a..b", "\\$x"]))
fuzz_values = st.recursive(
    json_scalars | st.sampled_from(["(", "null", "number", "^a", [2, 1], [0, 1]]),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, fuzz_values, max_size=3), st.lists(json_values, max_size=4))
def test_fuzzed_selectors_raise_only_bad_request(selector: dict[str, Any], docs: list[Any]) -> None:
    try:
        matcher = compile_selector(selector)
    except BadRequest:
        return
    for doc in docs + [{"a": doc} for doc in docs] + [{"a": {"b": docs}}]:
        assert matcher(doc) in (True, False)


# --------------------------------------------------------------------------- properties

# Documents whose fields a, b and c.d always exist, and selectors over those fields.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([1.5, "a", "B", "ab"]))
present_docs = st.fixed_dictionaries({
    "a": st.one_of(scalars, st.lists(scalars, max_size=3)),
    "b": scalars,
    "c": st.fixed_dictionaries({"d": scalars}),
})
fields = st.sampled_from(["a", "b", "c.d"])


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    condition = st.one_of(
        scalars,
        st.builds(lambda op, v: {op: v},
                  st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), scalars),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$in", "$nin", "$all"]),
                  st.lists(scalars, max_size=3)),
        st.builds(lambda v: {"$exists": v}, st.booleans()),
        st.builds(lambda v: {"$type": v},
                  st.sampled_from(["null", "boolean", "number", "string", "array", "object"])),
        st.builds(lambda v: {"$size": v}, st.integers(0, 3)),
        st.builds(lambda d, r: {"$mod": [d, r]}, st.sampled_from([2, 3, -2]), st.integers(-1, 1)),
        st.builds(lambda v: {"$regex": v}, st.sampled_from(["^a", "b", "(?i)A"])),
        st.builds(lambda v: {"$elemMatch": {"$gt": v}}, scalars),
        st.builds(lambda v: {"$allMatch": {"$ne": v}}, scalars),
        st.builds(lambda v: {"$not": {"$eq": v}}, scalars),
    )
    return st.builds(lambda f, c: {f: c}, fields, condition)


selectors = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$nor": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
    ),
    max_leaves=6,
)
any_docs = st.one_of(present_docs, st.dictionaries(st.sampled_from(["a", "b", "c"]), scalars, max_size=3))


@settings(max_examples=_EXAMPLES, deadline=None)
@given(selectors, present_docs)
def test_not_matches_exactly_when_selector_does_not(selector: dict[str, Any],
                                                    doc: dict[str, Any]) -> None:
    assert matches({"$not": selector}, doc) is (not matches(selector, doc))


@settings(max_examples=_EXAMPLES, deadline=None)
@given(st.lists(selectors, min_size=1, max_size=3), present_docs)
def test_nor_is_not_or_when_fields_exist(parts: list[dict[str, Any]], doc: dict[str, Any]) -> None:
    assert matches({"$nor": parts}, doc) is (not matches({"$or": parts}, doc))


@settings(max_examples=_EXAMPLES, deadline=None)
@given(selectors, any_docs)
def test_single_combinators_and_double_negation_are_identities(selector: dict[str, Any],
                                                               doc: dict[str, Any]) -> None:
    expected = matches(selector, doc)
    assert matches({"$or": [selector]}, doc) is expected
    assert matches({"$and": [selector]}, doc) is expected
    assert matches({"$not": {"$not": selector}}, doc) is expected
    assert matches({"$nor": [selector]}, doc) is matches({"$not": selector}, doc)


@settings(max_examples=_EXAMPLES, deadline=None)
@given(selectors, selectors, any_docs)
def test_and_or_combine_their_parts(s1: dict[str, Any], s2: dict[str, Any],
                                    doc: dict[str, Any]) -> None:
    m1, m2 = matches(s1, doc), matches(s2, doc)
    assert matches({"$and": [s1, s2]}, doc) is (m1 and m2)
    assert matches({"$or": [s1, s2]}, doc) is (m1 or m2)
