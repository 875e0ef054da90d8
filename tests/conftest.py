"""Test options: tests marked ``internet`` run only with ``--internet``."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--internet", action="store_true", default=False,
                     help="run tests that download the original public data sources")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--internet"):
        return
    skip = pytest.mark.skip(reason="needs network access; run with --internet")
    for item in items:
        if "internet" in item.keywords:
            item.add_marker(skip)
