"""The OpenAPI document describes exactly the JSON routes the application serves."""

import re

from web import create_app
from web.openapi import document

METHODS = {"get", "post", "put", "patch", "delete"}


JSON_PATHS = {"/healthz", "/metrics"}  # the JSON (and metrics) routes outside /api/


def _served(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") and rule.rule not in JSON_PATHS:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods if method.lower() in METHODS}
    return routes


def _described(doc) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_the_document_and_the_url_map_agree(settings):
    app = create_app(settings)
    served, described = _served(app), _described(document())
    assert served - described == set(), "routes missing from the OpenAPI document"
    assert described - served == set(), "documented routes the application does not serve"
    assert {"/api/sessions", "/api/repos/{repo}/packages", "/api/builds", "/healthz"} <= {path for path, _ in served}


def test_every_operation_is_complete_and_refers_to_known_components(settings):
    doc = document()
    assert doc["openapi"].startswith("3.")
    operation_ids = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            operation_ids.append(operation["operationId"])
            assert operation["responses"], f"{method} {path} has no responses"
    assert len(operation_ids) == len(set(operation_ids))
    text = str(doc)
    for kind, name in re.findall(r"#/components/(schemas|responses)/(\w+)", text):
        assert name in doc["components"][kind], f"{kind} {name} is referred to but not defined"


def test_the_app_serves_the_document(settings):
    client = create_app(settings).test_client()
    served = client.get("/api/openapi.json").json
    assert set(served["paths"]) == set(document()["paths"])
    assert served["servers"] == [{"url": settings.public_url}]
