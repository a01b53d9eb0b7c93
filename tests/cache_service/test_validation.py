"""Checks of request fields (cache_service/validation.py)."""

from __future__ import annotations

import pytest

from cache_service.errors import InvalidArgument
from cache_service.validation import list_limit, require_seq


def test_a_client_seq_is_checked() -> None:
    assert require_seq("1700000000000-5") == (1700000000000, 5)
    assert require_seq("17") == (17, 0)
    with pytest.raises(InvalidArgument, match="resume_from must be a stream id"):
        require_seq("1-")


def test_list_limit() -> None:
    assert list_limit(0) == 100 and list_limit(1000) == 1000
    with pytest.raises(InvalidArgument):
        list_limit(1001)
