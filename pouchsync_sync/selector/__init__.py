"""Mango selectors: validate once, compile to closures, match documents (pure, no I/O).

Theory of operation
-------------------
This follows CouchDB's ``mango_selector.erl`` (selector syntax:
https://docs.couchdb.org/en/stable/api/database/find.html#selector-syntax) in three
steps done once by :func:`compile_selector`, in two modules of this package:
``parse`` (steps 1 and 2, validation and normal form) and ``compile`` (step 3):

1. *parse*: validate every operator and make the implicit explicit: several keys in
   one object are an ``$and``; a bare value is ``$eq``; nested field objects and
   dotted names (``{"a": {"b": {"$gt": 1}}}`` == ``{"a.b": {"$gt": 1}}``) become
   one path pushed down through ``$and``/``$or``/``$not``/``$nor`` to the terminal
   condition (CouchDB's ``norm_ops`` + ``norm_fields``).
2. *negations*: ``$not`` and ``$nor`` are pushed down to the terminals as CouchDB's
   ``norm_negations`` does (De Morgan; ``$eq``<->``$ne``, ``$lt``<->``$gte``,
   ``$in``<->``$nin``, ``$exists`` flipped; other operators keep a ``$not``).
3. *compile*: every node becomes a closure; the matcher is their composition.

Missing fields (CouchDB semantics, chosen on purpose): a condition on a field that
is absent never matches, *except* ``{"$exists": false}``.  So ``{"a": {"$ne": 1}}``
and ``{"a": {"$nin": [1]}}`` do not match ``{}``.  Because of step 2 the same holds
through negation: ``{"$not": {"a": 1}}`` and ``{"$nor": [{"a": 1}]}`` become
``{"a": {"$ne": 1}}`` and so do not match a document without ``a``, while
``{"a": {"$not": {"$exists": true}}}`` does.  ``$not`` is therefore the logical
negation only for documents where the fields it names exist.
A path through a non-container (``a.b`` when ``a`` is 5) matches nothing, not even
``$exists: false``.  Numeric path segments index arrays (``"tags.0"``).
``\\.`` in a field name is a literal dot.

Values compare by CouchDB view collation (:func:`collate`), also across types, so
``{"a": {"$gt": 1}}`` matches any string.  Booleans are not numbers.
Deliberate differences from CouchDB: ``$eq``/``$ne``/``$in``/``$nin``/``$all``
compare objects ignoring member order (JSON objects are unordered and our stores
may reorder members; ordering operators keep CouchDB's member-order collation);
``$type`` with an unknown type name, ``$mod`` with a zero divisor and a condition
that needs a field but has none are rejected instead of never matching / crashing;
an empty object with no field path matches everything; ``$regex`` is the ``regex``
package's ``search`` (Python ``re`` syntax), not PCRE; ``$text`` is not supported.

``$regex`` is a client's code running on the server, so it is bounded: a pattern is at
most ``MAX_REGEX_LENGTH`` characters, and each search runs with a time budget
(``REGEX_TIMEOUT`` seconds) and without the GIL, so a pattern with
catastrophic backtracking is a :class:`BadRequest` (400) after that budget instead of
freezing every other thread (docs/reliability.md, "hostile clients").  Conditions on ``_id`` compare
strings by code point (CouchDB's raw order), not by collation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..collation import collate
from .compile import REGEX_TIMEOUT, Matcher, compile_node
from .parse import MAX_REGEX_LENGTH, normalize

__all__ = ["compile_selector", "matches", "validate_selector", "collate", "Matcher",
           "REGEX_TIMEOUT", "MAX_REGEX_LENGTH"]

log = logging.getLogger(__name__)


def validate_selector(selector: Any) -> None:
    """Raise :class:`BadRequest` naming the bad operator if ``selector`` is invalid."""
    normalize(selector)


def compile_selector(selector: Mapping[str, Any]) -> Matcher:
    """Validate ``selector`` once and return a fast ``matcher(doc) -> bool``.

    The matcher is pure and thread-safe; it never raises on any document (a document
    nested too deeply to compare does not match).
    """
    test = compile_node(normalize(selector), False)

    def matcher(doc: Any) -> bool:
        try:
            return test(doc)
        except RecursionError:
            log.debug("selector: document nested too deeply to match; treated as no match")
            return False
    return matcher


def matches(selector: Mapping[str, Any], doc: Any) -> bool:
    """Whether ``doc`` matches ``selector`` (compiles each call; prefer
    :func:`compile_selector` when matching many documents)."""
    return compile_selector(selector)(doc)
