"""Who is calling and what they may see (cache_service/scoping.py)."""

from __future__ import annotations

import pytest

from cache_service.errors import PermissionDenied
from cache_service.scoping import Caller, caller_from_metadata


def test_caller_from_metadata() -> None:
    assert caller_from_metadata(None) == Caller()
    assert caller_from_metadata([("x-user-id", "alice")]) == Caller("alice", False)
    assert caller_from_metadata([("x-user-id", b"root"), ("x-user-scope", "read admin")]) == Caller("root", True)
    assert caller_from_metadata([("x-user-scope", "admin")]) == Caller(None, False)  # scope alone is nothing


def test_user_filter() -> None:
    assert Caller().user_filter("") == "" and Caller().user_filter("bob") == "bob"
    assert Caller("root", True).user_filter("bob") == "bob"
    assert Caller("alice").user_filter("") == "alice" and Caller("alice").user_filter("alice") == "alice"
    with pytest.raises(PermissionDenied):
        Caller("alice").user_filter("bob")
    assert Caller("alice").may_see("alice") and not Caller("alice").may_see("bob")
