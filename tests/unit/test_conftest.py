"""The suite's own set-up (tests/conftest.py): no per-example deadline for hypothesis."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st


@given(st.just(None))
@settings(max_examples=1)
def test_a_hypothesis_example_slower_than_200_ms_is_no_failure(_: None) -> None:
    """Hypothesis' default deadline fails an example that takes over 200 ms, as an example of a passing test does
    when other processes share its core: the suite's profile has no deadline."""
    time.sleep(0.3)
