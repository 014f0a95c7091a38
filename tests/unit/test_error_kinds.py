"""One definition per kind of refusal: every package's error of a kind is an ``asci.errors`` kind too.

``except asci.errors.NotFound`` catches a not-found from any package, ``except BrokerError`` (each
package's own root) still catches the package's, and the HTTP status of every error stays what the
API has always answered (``asci.http`` answers ``http_status`` with the class name as ``error``).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from asci import errors
from asci.errors import AsciError

ROOTS = {"asci": AsciError, "rpmrepo": "RepoError", "builder": "BuildError", "broker": "BrokerError", "ci": "CiError",
         "web": "WebError"}
KIND_OF_STATUS = {400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
                  409: errors.Conflict}
# the statuses the API answers; unchanged by the shared kinds
STATUSES = {
    "asci": {"AccountError": 400, "InvalidNevra": 400, "BadRequest": 400, "Unauthorized": 401, "Forbidden": 403,
             "NotFound": 404, "Conflict": 409, "ConfigError": 500, "DatabaseError": 500},
    "rpmrepo": {"InvalidPackage": 400, "InvalidName": 400, "PackageTooLarge": 413, "PublishForbidden": 403,
                "NotFound": 404, "ConflictError": 409, "LockTimeout": 503, "MetadataError": 500},
    "builder": {"NotLaunchable": 400, "UnknownVersion": 404, "RecipeError": 500, "VersionError": 500},
    "broker": {"BadRequest": 400, "ImportFailed": 400, "Forbidden": 403, "NotFound": 404, "Conflict": 409,
               "Unprocessable": 422, "QuotaExceeded": 429, "BackendError": 502, "NoCapacity": 503},
    "ci": {"JobNotFound": 404, "GateFailed": 500},
    "web": {"DemoError": 500},
}


def _errors_of(package: str) -> dict[str, type]:
    module = importlib.import_module(f"{package}.errors")
    return {name: cls for name, cls in vars(module).items()
            if inspect.isclass(cls) and issubclass(cls, AsciError) and cls.__module__ == module.__name__}


def _root_of(package: str) -> type:
    root = ROOTS[package]
    return root if isinstance(root, type) else _errors_of(package)[root]


@pytest.mark.parametrize("package", list(ROOTS))
def test_every_error_of_a_kind_is_that_kind_and_keeps_its_root(package):
    root = _root_of(package)
    for name, cls in _errors_of(package).items():
        assert issubclass(cls, root), f"{package}.errors.{name} left its package root {root.__name__}"
        if cls is root:
            continue
        kind = KIND_OF_STATUS.get(cls.http_status)
        if kind is not None:
            assert issubclass(cls, kind), f"{package}.errors.{name} answers {cls.http_status} but is no {kind.__name__}"


@pytest.mark.parametrize("package", list(ROOTS))
def test_http_statuses_are_unchanged(package):
    found = _errors_of(package)
    assert {name: found[name].http_status for name in STATUSES[package]} == STATUSES[package]


def test_one_class_per_kind_name():
    """A name defined by several packages is the shared kind's: the others derive from ``asci.errors``'."""
    for package in ROOTS:
        for name, cls in _errors_of(package).items():
            shared = getattr(errors, name, None)
            if isinstance(shared, type) and shared is not cls:
                assert issubclass(cls, shared), f"{package}.errors.{name} is a second, unrelated {name}"


@pytest.mark.parametrize("raise_it", [
    lambda: importlib.import_module("rpmrepo.errors").NotFound("no such repository"),
    lambda: importlib.import_module("broker.errors").NotFound("no such session"),
    lambda: importlib.import_module("builder").UnknownVersion("no such version"),
    lambda: importlib.import_module("ci").JobNotFound("no such job"),
])
def test_except_the_shared_kind_catches_every_package(raise_it):
    error = raise_it()
    with pytest.raises(errors.NotFound):
        raise error
    root = _root_of(type(error).__module__.split(".")[0])
    with pytest.raises(root):
        raise error
    assert not isinstance(error, errors.Forbidden)
