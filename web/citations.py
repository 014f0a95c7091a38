"""Citing environment versions: the citation API and a landing page per persistent identifier.

GET /api/environments/<env>/versions/<version>/citation?format=cff|bibtex|datacite
GET /cite/<identifier>                      the version's public facts and how to cite it

Both need a login (any user: a citation names no experiment's data), or nobody's when the
``public_citations`` setting (ASCI_PUBLIC_CITATIONS) is on.
"""

from __future__ import annotations

import re

from flask import Response, g, redirect, render_template, request, url_for

import builder
from asci.db import session_scope
from asci.errors import BadRequest
from asci.http import blueprint, current_settings, known_args
from asci.webauth import optional_caller, require_user

bp = blueprint("citations", __name__)
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
VERSION = re.compile(r"\d{4}\.\d{2}\.\d{2}\.\d{1,4}")
IDENTIFIER = re.compile(r"asci:[0-9a-f]{20}")


def landing_url(identifier: str) -> str:
    """The landing page's absolute address under the platform's public URL."""
    return current_settings().public_url.rstrip("/") + url_for("citations.landing", identifier=identifier)


@bp.get("/api/environments/<name>/versions/<version>/citation")
def citation(name: str, version: str):
    """The version's citation in one format (CFF by default)."""
    settings = current_settings()
    with session_scope(settings) as db:
        if settings.public_citations:
            optional_caller(db)
        else:
            require_user(db)
        known_args("format")
        fmt = request.args.get("format", "cff")
        if fmt not in builder.CITATION_FORMATS:
            raise BadRequest(f"format must be one of {', '.join(builder.CITATION_FORMATS)}")
        if not NAME.fullmatch(name) or not VERSION.fullmatch(version):
            raise builder.UnknownVersion(f"{name[:64]!r} has no version {version[:40]!r}")
        item = builder.citation_of(db, name, version, landing_url)
        text = builder.render_citation(item, fmt)
    extension = {"cff": "cff", "bibtex": "bib", "datacite": "json"}[fmt]
    return Response(text, mimetype=builder.CITATION_MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'inline; filename="{name}-{version}.{extension}"'})


@bp.get("/cite/<identifier>")
def landing(identifier: str):
    """The landing page of a persistent identifier."""
    settings = current_settings()
    if not settings.public_citations and g.get("user") is None:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if not IDENTIFIER.fullmatch(identifier):
        raise builder.UnknownVersion("not an ASCI identifier")
    with session_scope(settings) as db:
        item = builder.find_identifier(db, identifier, landing_url)
        cff, bibtex = builder.render_citation(item, "cff"), builder.render_citation(item, "bibtex")
    return render_template("citations/landing.html", item=item, facts=item.facts(), cff=cff, bibtex=bibtex)
