"""How to cite an environment version: a persistent identifier and CFF, BibTeX and DataCite JSON.

The identifier is derived from the version's lock digest (what it holds) and its name, so it is the
same wherever the version is restored (``asci env import``) and differs between two versions even
when one was forced from the same lock: ``asci:<20 hex digits>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import yaml

from builder.errors import VersionError

PUBLISHER = "ASCI"
FORMATS = ("cff", "bibtex", "datacite")
MEDIA_TYPES = {"cff": "application/x-yaml", "bibtex": "application/x-bibtex", "datacite": "application/json"}


def persistent_id(environment: str, version: str, lock_digest: str) -> str:
    """``asci:`` and 20 hex digits of sha256(environment, version, lock digest)."""
    if not lock_digest:
        raise VersionError(f"{environment} {version} has no lock digest to derive an identifier from")
    return "asci:" + hashlib.sha256(f"{environment}\n{version}\n{lock_digest}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Citable:
    """The public facts of a version that a citation names."""

    environment: str
    version: str
    description: str
    beamline: str
    lock_digest: str
    image: str  # registry/name@sha256:...
    base_digest: str
    recipe_commit: str
    built_on: str  # YYYY-MM-DD
    packages: tuple[dict, ...]  # {"nevra", "sha256"}
    landing_url: str = ""

    @property
    def identifier(self) -> str:
        return persistent_id(self.environment, self.version, self.lock_digest)

    @property
    def title(self) -> str:
        return f"{self.environment} {self.version}: data processing environment"

    def facts(self) -> dict:
        """The landing page's and the API's view."""
        return {"identifier": self.identifier, "environment": self.environment, "version": self.version,
                "description": self.description, "beamline": self.beamline, "built_on": self.built_on,
                "lock_digest": f"sha256:{self.lock_digest}", "image": self.image, "base_digest": self.base_digest,
                "recipe_commit": self.recipe_commit, "packages": [dict(p) for p in self.packages],
                "url": self.landing_url}


def citable(row, landing_url: str = "") -> Citable:
    """The :class:`Citable` of an ``EnvironmentVersion`` row (succeeded versions only)."""
    if not row.lock_digest or not row.image_digest:
        raise VersionError(f"{row.environment.name} {row.version} was never pushed; there is nothing to cite")
    lock = row.lock or {}
    return Citable(environment=row.environment.name, version=row.version, description=row.environment.description,
                   beamline=row.environment.beamline, lock_digest=row.lock_digest, image=row.pull_reference,
                   base_digest=(lock.get("base") or {}).get("id", ""), recipe_commit=row.recipe_commit,
                   built_on=row.created_at.date().isoformat(),
                   packages=tuple({"nevra": p["nevra"], "sha256": p["sha256"]} for p in lock.get("packages", [])),
                   landing_url=landing_url)


def cff(item: Citable) -> str:
    """CITATION.cff (Citation File Format 1.2.0)."""
    document = {
        "cff-version": "1.2.0",
        "message": "If you processed data in this environment, please cite it as below.",
        "type": "software",
        "title": item.title,
        "version": item.version,
        "date-released": item.built_on,
        "authors": [{"name": PUBLISHER + (f" beamline {item.beamline}" if item.beamline else "")}],
        "abstract": item.description or f"The {item.environment} desktop environment",
        "identifiers": [{"type": "other", "value": item.identifier,
                         "description": "ASCI persistent identifier (derived from the lock digest)"}]
        + ([{"type": "other", "value": item.image, "description": "container image by digest"}] if item.image else []),
        "keywords": ["data processing environment", "container image", item.environment],
    }
    if item.recipe_commit:
        document["commit"] = item.recipe_commit
    if item.landing_url:
        document["url"] = item.landing_url
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _bib_escape(text: str) -> str:
    return "".join("\\" + c if c in "{}&%$#_" else c for c in text)


def bibtex(item: Citable) -> str:
    """A BibTeX ``@software`` entry keyed by the environment and version."""
    key = "asci-" + "".join(c if c.isalnum() else "-" for c in f"{item.environment}-{item.version}")
    fields = {"title": item.title, "author": PUBLISHER, "version": item.version, "year": item.built_on[:4],
              "month": item.built_on[5:7], "note": f"ASCI identifier {item.identifier}; image {item.image}",
              "howpublished": item.landing_url or item.image}
    if item.landing_url:
        fields["url"] = item.landing_url
    body = ",\n".join(f"  {name} = {{{_bib_escape(value)}}}" for name, value in fields.items())
    return f"@software{{{key},\n{body}\n}}\n"


def datacite(item: Citable) -> dict:
    """DataCite Metadata Schema 4.5 JSON (the identifier as an alternate one: no DOI is minted here;
    a facility that mints DOIs adds ``doi`` and keeps this as the alternate identifier)."""
    return {
        "schemaVersion": "http://datacite.org/schema/kernel-4",
        "alternateIdentifiers": [{"alternateIdentifier": item.identifier, "alternateIdentifierType": "ASCI"}],
        "creators": [{"name": PUBLISHER, "nameType": "Organizational"}],
        "titles": [{"title": item.title}],
        "publisher": {"name": PUBLISHER},
        "publicationYear": item.built_on[:4],
        "types": {"resourceTypeGeneral": "Software", "resourceType": "Desktop environment image"},
        "version": item.version,
        "dates": [{"date": item.built_on, "dateType": "Created"}],
        "descriptions": [{"description": item.description or f"The {item.environment} desktop environment",
                          "descriptionType": "Abstract"}],
        "relatedIdentifiers": ([{"relatedIdentifier": item.landing_url, "relatedIdentifierType": "URL",
                                 "relationType": "IsDescribedBy"}] if item.landing_url else []),
        "formats": ["application/vnd.docker.distribution.manifest.v2+json"],
    }


def render(item: Citable, fmt: str) -> str:
    """The citation of ``item`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "cff":
        return cff(item)
    if fmt == "bibtex":
        return bibtex(item)
    if fmt == "datacite":
        return json.dumps(datacite(item), indent=2) + "\n"
    raise VersionError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def citation_of(db, environment: str, version: str, landing_url=lambda identifier: "") -> Citable:
    """The citable facts of ``environment`` ``version``; UnknownVersion / VersionError otherwise.
    ``landing_url(identifier)`` gives the landing page's address to put in the citation."""
    from builder.versions import get_version

    row = get_version(db, environment, version)
    pid = persistent_id(environment, version, row.lock_digest) if row.lock_digest else ""
    return citable(row, landing_url(pid) if pid else "")


def find_identifier(db, identifier: str, landing_url=lambda identifier: "") -> Citable:
    """The version whose persistent identifier is ``identifier``; UnknownVersion when none is."""
    from sqlalchemy import select

    from builder.errors import UnknownVersion
    from builder.models import EnvironmentVersion, VersionStatus

    rows = db.scalars(select(EnvironmentVersion).where(EnvironmentVersion.status == VersionStatus.SUCCEEDED,
                                                       EnvironmentVersion.lock_digest != ""))
    for row in rows:
        if persistent_id(row.environment.name, row.version, row.lock_digest) == identifier:
            return citable(row, landing_url(identifier))
    raise UnknownVersion(f"no environment version has the identifier {identifier!r}")


def about_text(item: Citable) -> str:
    """What the desktop's "About this environment" launcher shows: name, version, identifier,
    packages and how to cite."""
    lines = [f"{item.environment} {item.version}", "", item.description, "",
             f"Identifier:     {item.identifier}", f"Built on:       {item.built_on}",
             f"Lock digest:    sha256:{item.lock_digest}", f"Base image:     {item.base_digest}",
             f"Recipe commit:  {item.recipe_commit}", "", "Packages (NEVRA, sha256):"]
    lines += [f"  {p['nevra']}  {p['sha256']}" for p in item.packages]
    lines += ["", "How to cite (also in /etc/asci/CITATION.cff):", "", bibtex(item)]
    return "\n".join(lines) + "\n"


def about_launcher() -> str:
    """The desktop entry that opens :func:`about_text` (installed at /etc/asci/ABOUT.txt) in a terminal."""
    return ("[Desktop Entry]\nType=Application\nName=About this environment\n"
            "Exec=mate-terminal --hide-menubar --title=About-this-environment -x less /etc/asci/ABOUT.txt\n"
            "Terminal=false\nIcon=help-about\nCategories=Documentation;\n")
