"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.e2e.chromium import chromium_path


@pytest.fixture
def require_chromium() -> None:
    """Fail, loudly, a browser test on a machine without Chromium (never skip it)."""
    if chromium_path() is None:
        pytest.fail(
            "chromium is not installed: run the suite through scripts/test_env.sh "
            "(it installs Debian's chromium) or apt-get install chromium"
        )
