"""The examples in the library's docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "silhouette_jax.distances",
    "silhouette_jax.silhouette",
    "silhouette_jax.losses",
    "silhouette_jax.validation",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
