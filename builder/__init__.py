"""Builder: recipe + repository → lock → Dockerfile → image → registry → recorded version.

Also builds the base desktop images from ``recipes/base``. Python API (for ``ci/`` and ``web/``)::

    build_environment(settings, name, log=print, *, client=None, promote=False) -> EnvironmentVersion
    promote(settings, name, version) -> EnvironmentVersion          # moves latest, sets current
    reproduce(settings, name, version, log=print, *, client=None, keep=False) -> ReproduceResult
    diff_locks(old_lock, new_lock) -> LockDiff
    load_recipe(recipes_dir, name) -> Recipe;  list_recipes(recipes_dir) -> list[Recipe]

Names are imported lazily so that ``import builder.models`` stays light.
"""

_API = {
    "build_environment": "builder.build", "prepare": "builder.build", "promote": "builder.versions",
    "reproduce": "builder.reproduce", "diff_locks": "builder.diff", "load_recipe": "builder.recipes",
    "list_recipes": "builder.recipes", "rpmvercmp": "builder.rpmvercmp", "label_compare": "builder.rpmvercmp",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")
