"""Environment recipes: ``recipes/environments/<name>.yaml`` loaded into typed, validated values."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import RecipeError
from builder.schema import SCHEMA_NAME, validate_text

ENV_DIR = "environments"


@dataclass(frozen=True)
class PackageSpec:
    """A package the recipe asks for, optionally pinned (``version`` or ``[epoch:]version-release``)."""

    name: str
    version: str | None = None

    @property
    def dnf_spec(self) -> str:
        """What dnf is asked to install: ``name`` or ``name-[epoch:]version[-release]``."""
        return f"{self.name}-{self.version}" if self.version else self.name


@dataclass(frozen=True)
class Launcher:
    """A desktop entry for an application."""

    name: str
    command: str
    icon: str = ""
    terminal: bool = False

    @property
    def file_name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "app"
        return f"asci-{slug}.desktop"


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class ResourceDefaults:
    """An environment's session defaults (``resources:``): None where the recipe leaves the platform's."""

    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    memory_guarantee_bytes: int | None = None
    memory_limit_bytes: int | None = None


def _size(text: str) -> int:
    """Bytes of a size the schema let through (``512M``, ``1.5G``, ``1048576``)."""
    unit = text[-1] if text[-1] in _SIZE_UNITS else ""
    return int(float(text[:-1] if unit else text) * _SIZE_UNITS[unit])


def parse_resources(data: dict, source: str) -> ResourceDefaults:
    """The ``resources:`` mapping as numbers; a guarantee above its limit is a RecipeError."""
    result = ResourceDefaults(
        cpu_guarantee=float(data["cpu_guarantee"]) if data.get("cpu_guarantee") else None,
        cpu_limit=float(data["cpu_limit"]) if data.get("cpu_limit") else None,
        memory_guarantee_bytes=_size(data["mem_guarantee"]) if data.get("mem_guarantee") else None,
        memory_limit_bytes=_size(data["mem_limit"]) if data.get("mem_limit") else None)
    for name, value in (("cpu_guarantee", result.cpu_guarantee), ("cpu_limit", result.cpu_limit),
                        ("mem_guarantee", result.memory_guarantee_bytes), ("mem_limit", result.memory_limit_bytes)):
        if value is not None and value <= 0:
            raise RecipeError(f"{source}: resources.{name}: must be more than 0")
    for what, guarantee, limit in (("cpu", result.cpu_guarantee, result.cpu_limit),
                                   ("mem", result.memory_guarantee_bytes, result.memory_limit_bytes)):
        if guarantee is not None and limit is not None and guarantee > limit:
            raise RecipeError(f"{source}: resources.{what}_guarantee: must not exceed {what}_limit")
    return result


@dataclass(frozen=True)
class Recipe:
    """A validated environment recipe."""

    name: str
    beamline: str
    description: str
    base: str
    packages: tuple[PackageSpec, ...]
    env: dict[str, str] = field(default_factory=dict)
    launchers: tuple[Launcher, ...] = ()
    checks: tuple[str, ...] = ()
    resources: ResourceDefaults = field(default_factory=ResourceDefaults)
    path: Path | None = None
    text: str = ""

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def environments_dir(recipes_dir: Path) -> Path:
    return recipes_dir / ENV_DIR


def schema_path(recipes_dir: Path) -> Path:
    return environments_dir(recipes_dir) / SCHEMA_NAME


def parse_recipe(text: str, source: str, recipes_dir: Path, path: Path | None = None) -> Recipe:
    """Validate and convert recipe text; ``source`` names it in errors."""
    data = validate_text(text, source, schema_path(recipes_dir))
    packages = tuple(PackageSpec(p["name"], p.get("version")) for p in data["packages"])
    names = [p.name for p in packages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(f"{source}: packages: listed more than once: {', '.join(duplicates)}")
    launchers = tuple(Launcher(l["name"], l["command"], l.get("icon") or "", bool(l.get("terminal")))
                      for l in data.get("launchers") or [])
    files = [l.file_name for l in launchers]
    if len(set(files)) != len(files):
        raise RecipeError(f"{source}: launchers: two launchers have the same name")
    return Recipe(name=data["name"], beamline=data["beamline"], description=data["description"],
                  base=data["base"], packages=packages, env=dict(data.get("env") or {}),
                  launchers=launchers, checks=tuple(data.get("checks") or ()),
                  resources=parse_resources(data.get("resources") or {}, source), path=path, text=text)


def load_file(path: Path, recipes_dir: Path) -> Recipe:
    """Load and validate one recipe file (its ``name`` must match the file name)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror}") from None
    recipe = parse_recipe(text, str(path), recipes_dir, path)
    if recipe.name != path.stem:
        raise RecipeError(f"{path}:1: name: {recipe.name!r} must match the file name {path.stem!r}")
    return recipe


def recipe_files(recipes_dir: Path) -> list[Path]:
    folder = environments_dir(recipes_dir)
    return sorted(p for p in folder.glob("*.yaml") if p.name != SCHEMA_NAME) if folder.is_dir() else []


def load_recipe(recipes_dir: Path, name: str) -> Recipe:
    """The recipe of environment ``name``."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise RecipeError(f"invalid environment name {name!r}")
    path = environments_dir(recipes_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in recipe_files(recipes_dir)) or "none"
        raise RecipeError(f"unknown environment {name!r} (recipes: {known})")
    return load_file(path, recipes_dir)


def list_recipes(recipes_dir: Path) -> list[Recipe]:
    """Every recipe, validated."""
    return [load_file(p, recipes_dir) for p in recipe_files(recipes_dir)]
