"""Shared test switches: slow tests run with --run-slow or GCONV_RUN_SLOW=1, and only with the memory they need."""

import os

import pytest

SLOW_TEST_MEMORY = 16 * 2**30  # the >2**31-element output test holds about 8.6 GB


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--run-slow") or os.environ.get("GCONV_RUN_SLOW") == "1"
    if wanted and _physical_memory() >= SLOW_TEST_MEMORY:
        return
    reason = "slow: pass --run-slow or set GCONV_RUN_SLOW=1" if not wanted else "slow: needs 16 GiB of memory"
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
