"""The citation API (CFF, BibTeX, DataCite JSON), the landing page per identifier and who may see them."""

from __future__ import annotations

import json

import bibtexparser
import yaml
from bibtexparser.bparser import BibTexParser
from datacite import schema45
from sqlalchemy import select

from asci.db import session_scope
from builder.citation import persistent_id
from builder.models import Environment, EnvironmentVersion, VersionStatus
from web import create_app

LOCK_DIGEST = "ab" * 32
VERSION = "2026.12.06.1"


def _cited_version(settings, world) -> str:
    with session_scope(settings) as db:
        env = db.scalar(select(Environment).where(Environment.name == world["env"]))
        env.description = "MX processing"
        db.add(EnvironmentVersion(
            environment_id=env.id, version=VERSION, status=VersionStatus.SUCCEEDED, lock_digest=LOCK_DIGEST,
            image_reference=f"127.0.0.1:5000/{env.name}:{VERSION}", image_digest="sha256:" + "cd" * 32,
            recipe_commit="1" * 40,
            lock={"packages": [{"name": "mx-lib", "epoch": 1, "version": "2.0", "release": "1", "arch": "noarch",
                                "nevra": "mx-lib-1:2.0-1.noarch", "sha256": "2" * 64}],
                  "base": {"id": "sha256:" + "ef" * 32}}))
    return persistent_id(world["env"], VERSION, LOCK_DIGEST)


def test_citations_in_three_formats_for_any_logged_in_user(settings, world, as_user):
    pid = _cited_version(settings, world)
    client = as_user("bob")
    url = f"/api/environments/{world['env']}/versions/{VERSION}/citation"
    cff = client.get(url)
    assert cff.status_code == 200 and cff.mimetype == "application/x-yaml"
    document = yaml.safe_load(cff.get_data(as_text=True))
    assert document["cff-version"] == "1.2.0" and document["identifiers"][0]["value"] == pid
    assert document["url"].endswith(f"/cite/{pid}")
    bib = client.get(url + "?format=bibtex")
    [entry] = bibtexparser.loads(bib.get_data(as_text=True), parser=BibTexParser(ignore_nonstandard_types=False)).entries
    assert entry["version"] == VERSION and pid in entry["note"]
    datacite = json.loads(client.get(url + "?format=datacite").get_data(as_text=True))
    assert list(schema45.validator.iter_errors(datacite)) == []
    bad = client.get(url + "?format=ris")
    assert bad.status_code == 400 and "format must be one of" in bad.get_json()["error"]
    assert client.get(f"/api/environments/{world['env']}/versions/2026.01.01.9/citation").status_code == 404
    assert client.get(f"/api/environments/{world['env']}/versions/v1/citation").status_code == 404

    page = client.get(f"/cite/{pid}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and pid in text and "mx-lib-1:2.0-1.noarch" in text and "2" * 64 in text
    assert "sha256:" + "ef" * 32 in text and "1" * 40 in text and "2026-12-06" in text
    assert client.get("/cite/asci:" + "0" * 20).status_code == 404
    home = as_user("alice").get("/").get_data(as_text=True)  # the version history links each version's page
    assert f"/cite/{pid}" in home


def test_anonymous_visitors_only_when_citations_are_public(settings, world):
    pid = _cited_version(settings, world)
    url = f"/api/environments/{world['env']}/versions/{VERSION}/citation"
    private = create_app(settings, {"TESTING": True}).test_client()
    assert private.get(url).status_code == 401
    assert private.get(f"/cite/{pid}").status_code == 302  # to the login page
    public = create_app(settings.replace(public_citations=True), {"TESTING": True}).test_client()
    assert public.get(url).status_code == 200
    assert pid in public.get(f"/cite/{pid}").get_data(as_text=True)


def test_the_openapi_document_describes_the_citation_route(app):
    paths = app.test_client().get("/api/openapi.json").get_json()["paths"]
    operation = paths["/api/environments/{name}/versions/{version}/citation"]["get"]
    assert operation["operationId"] == "versionCitation"
    assert {p["name"] for p in operation["parameters"]} == {"name", "version", "format"}
