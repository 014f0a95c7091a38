"""Citations of a version parsed by real parsers: PyYAML (CFF), bibtexparser (BibTeX) and the DataCite
4.5 JSON schema the ``datacite`` package ships."""

from __future__ import annotations

import json

import bibtexparser
import pytest
import yaml
from datacite import schema45

from builder.citation import Citable, about_text, persistent_id, render
from builder.errors import VersionError

ITEM = Citable(environment="mx-crystallography", version="2026.12.06.1", description="MX data {processing} & more",
               beamline="MX1", lock_digest="ab" * 32, image="127.0.0.1:5000/mx-crystallography@sha256:" + "cd" * 32,
               base_digest="sha256:" + "ef" * 32, recipe_commit="1" * 40, built_on="2026-12-06",
               packages=({"nevra": "mx-lib-1:2.0-1.noarch", "sha256": "2" * 64},),
               landing_url="https://asci.example.org/cite/asci:0123")


def test_the_identifier_derives_from_the_lock_and_differs_between_versions():
    pid = persistent_id("mx", "2026.12.06.1", "ab" * 32)
    assert pid.startswith("asci:") and len(pid) == 25 and pid == persistent_id("mx", "2026.12.06.1", "ab" * 32)
    assert pid != persistent_id("mx", "2026.12.06.2", "ab" * 32)  # a forced rebuild of the same lock
    assert pid != persistent_id("mx", "2026.12.06.1", "ac" * 32)
    with pytest.raises(VersionError):
        persistent_id("mx", "2026.12.06.1", "")


def test_cff_is_citation_file_format_1_2():
    document = yaml.safe_load(render(ITEM, "cff"))
    assert document["cff-version"] == "1.2.0" and document["type"] == "software"
    for key in ("message", "title", "authors"):  # required by the CFF 1.2.0 schema
        assert document[key]
    assert document["version"] == "2026.12.06.1" and str(document["date-released"]) == "2026-12-06"
    assert document["identifiers"][0]["value"] == ITEM.identifier
    assert document["url"] == ITEM.landing_url and document["commit"] == "1" * 40


def test_bibtex_parses_with_bibtexparser():
    from bibtexparser.bparser import BibTexParser

    parser = BibTexParser(ignore_nonstandard_types=False)  # @software is biblatex's type, not BibTeX 0.99's
    [entry] = bibtexparser.loads(render(ITEM, "bibtex"), parser=parser).entries
    assert entry["ENTRYTYPE"] == "software" and entry["ID"] == "asci-mx-crystallography-2026-12-06-1"
    assert entry["version"] == "2026.12.06.1" and entry["year"] == "2026"
    assert ITEM.identifier in entry["note"] and entry["url"] == ITEM.landing_url


def test_datacite_json_is_valid_against_the_datacite_4_5_schema():
    document = json.loads(render(ITEM, "datacite"))
    errors = [error.message for error in schema45.validator.iter_errors(document)]
    assert errors == []
    assert document["alternateIdentifiers"] == [{"alternateIdentifier": ITEM.identifier,
                                                 "alternateIdentifierType": "ASCI"}]
    assert document["types"]["resourceTypeGeneral"] == "Software" and document["publicationYear"] == "2026"
    broken = dict(document)
    del broken["titles"]
    assert not schema45.validate(broken)  # the schema is really checked


def test_about_text_and_unknown_formats():
    text = about_text(ITEM)
    assert ITEM.identifier in text and "mx-lib-1:2.0-1.noarch" in text and "@software{" in text
    with pytest.raises(VersionError, match="format must be one of"):
        render(ITEM, "ris")
