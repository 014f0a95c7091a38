"""Fixtures for ci tests: the project's mx-crystallography and imaging recipes in a throw-away git
repository, and settings without debounce or retry delays."""

from __future__ import annotations

import pytest

from tests.support import RecipesRepo


@pytest.fixture
def ci_recipes(tmp_path) -> RecipesRepo:
    """A recipes git repository holding the base definitions and two of the project's recipes."""
    return RecipesRepo(tmp_path / "recipes", project_recipes=("mx-crystallography", "imaging"))


@pytest.fixture
def ci_settings(settings, ci_recipes):
    """Settings on SQLite with the throw-away recipes and no debounce."""
    return settings.replace(recipes_dir=ci_recipes.root, ci_debounce_s=0, ci_retry_base_s=0)
