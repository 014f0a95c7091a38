"""Recipe schema: the shipped recipes validate; bad ones name file, line and field."""

from __future__ import annotations


import pytest

from asci.config import PROJECT_ROOT
from builder.errors import RecipeError
from builder.recipes import ResourceDefaults, list_recipes, load_file, load_recipe, parse_recipe

RECIPES = PROJECT_ROOT / "recipes"

GOOD = """\
name: demo
beamline: MX2
description: A demo environment
base: debian12-mate
packages:
  - mx-process
  - name: asci-demo-viewer
    version: 1.0-1
env:
  DEMO_DIR: /data/demo
launchers:
  - name: Demo Viewer
    command: /usr/bin/asci-demo-viewer --mode=fast
    icon: applications-science
    terminal: false
checks:
  - /usr/bin/mx-process --version
"""


def parse(text: str):
    return parse_recipe(text, "demo.yaml", RECIPES)


def test_shipped_recipes_are_valid():
    names = {r.name for r in list_recipes(RECIPES)}
    assert {"mx-crystallography", "imaging"} <= names
    mx = load_recipe(RECIPES, "mx-crystallography")
    assert mx.base == "debian12-mate" and mx.launchers and mx.checks


def test_good_recipe_values():
    recipe = parse(GOOD)
    assert [p.dnf_spec for p in recipe.packages] == ["mx-process", "asci-demo-viewer-1.0-1"]
    assert recipe.env == {"DEMO_DIR": "/data/demo"}
    assert recipe.launchers[0].file_name == "asci-demo-viewer.desktop"
    assert recipe.launchers[0].terminal is False


@pytest.mark.parametrize("old,new,where", [
    ("  - mx-process\n", "  - 'mx-process; rm -rf /'\n", "demo.yaml:6: packages[0].name"),
    ("  - mx-process\n", "  - \"mx-process\\nRUN curl evil\"\n", "demo.yaml:6: packages[0].name"),
    ("    version: 1.0-1\n", "    version: 1.0 && id\n", "demo.yaml:8: packages[1].version"),
    ("/usr/bin/asci-demo-viewer --mode=fast", "/usr/bin/asci-demo-viewer \"$(id)\"", "demo.yaml:13: launchers[0].command"),
    ("/usr/bin/asci-demo-viewer --mode=fast", "sh -c 'x;y'", "demo.yaml:13: launchers[0].command"),
    ("    command: /usr/bin/asci-demo-viewer --mode=fast\n",
     "    command: \"/usr/bin/viewer\\nRUN id\"\n", "demo.yaml:13: launchers[0].command"),
    ("  DEMO_DIR: /data/demo", "  DEMO_DIR: /data/$HOME", "demo.yaml:10: env.DEMO_DIR"),
    ("  DEMO_DIR: /data/demo", "  DEMO_DIR: 'a\" \\\\'", "demo.yaml:10: env.DEMO_DIR"),
    ("  DEMO_DIR: /data/demo", "  VNC_PASSWORD: x", "demo.yaml:10: env.VNC_PASSWORD: 'VNC_PASSWORD' is reserved"),
    ("  DEMO_DIR: /data/demo", "  NVIDIA_VISIBLE_DEVICES: all", "demo.yaml:10: env.NVIDIA_VISIBLE_DEVICES: 'NVIDIA_"),
    ("  DEMO_DIR: /data/demo", "  NVIDIA_DRIVER_CAPABILITIES: all", "demo.yaml:10: env.NVIDIA_DRIVER_CAPABILITIES:"),
    ("  DEMO_DIR: /data/demo", "  VGL_DISPLAY: egl", "demo.yaml:10: env.VGL_DISPLAY: 'VGL_DISPLAY' is reserved"),
    ("  DEMO_DIR: /data/demo", "  ASCI_SESSION: '1'", "demo.yaml:10: env.ASCI_SESSION: 'ASCI_SESSION' is reserved"),
    ("  DEMO_DIR: /data/demo", "  VNC_SOCKET: /tmp/x", "demo.yaml:10: env.VNC_SOCKET: 'VNC_SOCKET' is reserved"),
    ("  DEMO_DIR: /data/demo", "  1BAD: x", "demo.yaml:10: env.1BAD"),
    ("description: A demo environment", "description: 'a\" LABEL x=\"y'", "demo.yaml:3: description"),
    ("name: demo", "name: Demo_Env", "demo.yaml:1: name"),
    ("    terminal: false", "    terminal: maybe", "demo.yaml:15: launchers[0].terminal"),
    ("  - /usr/bin/mx-process --version", "  - /usr/bin/mx-process; reboot", "demo.yaml:17: checks[0]"),
    ("beamline: MX2\n", "beamline: MX2\ncolour: blue\n", "demo.yaml:3: colour: unknown field"),
    ("beamline: MX2\n", "", "demo.yaml:1: beamline: required field is missing"),
    ("beamline: MX2\n", "beamline: MX2\nbeamline: MX3\n", "demo.yaml:3: beamline: duplicate key"),
    ("packages:\n", "packages: mx-process\nold_packages:\n", "demo.yaml:5: packages: expected a list"),
])
def test_bad_values_name_file_line_and_field(old, new, where):
    assert old in GOOD
    with pytest.raises(RecipeError) as info:
        parse(GOOD.replace(old, new, 1))
    assert where in str(info.value)


def test_malformed_yaml_names_the_line():
    with pytest.raises(RecipeError, match=r"demo.yaml:\d+: malformed YAML"):
        parse("name: demo\npackages: [a, b\nbase: x\n")


def test_empty_recipe_and_duplicate_packages():
    with pytest.raises(RecipeError, match="empty"):
        parse("# nothing\n")
    with pytest.raises(RecipeError, match="listed more than once: mx-process"):
        parse(GOOD.replace("  - name: asci-demo-viewer\n    version: 1.0-1\n", "  - mx-process\n"))


def test_file_name_must_match_and_unknown_environment(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(GOOD)
    with pytest.raises(RecipeError, match="must match the file name 'other'"):
        load_file(path, RECIPES)
    with pytest.raises(RecipeError, match="unknown environment 'nope'"):
        load_recipe(RECIPES, "nope")
    with pytest.raises(RecipeError, match="invalid environment name"):
        load_recipe(RECIPES, "../etc")


def test_resources_give_the_environments_session_defaults():
    assert parse(GOOD).resources == ResourceDefaults()  # none: the platform's settings apply
    recipe = parse(GOOD + "resources:\n  cpu_guarantee: 0.5\n  cpu_limit: 4\n  mem_guarantee: 1.5G\n  mem_limit: 8G\n")
    assert recipe.resources == ResourceDefaults(0.5, 4.0, 3 << 29, 8 << 30)
    assert parse(GOOD + "resources:\n  mem_limit: 1048576\n").resources.memory_limit_bytes == 1 << 20
    mx = load_recipe(RECIPES, "mx-crystallography").resources
    assert (mx.cpu_guarantee, mx.memory_guarantee_bytes, mx.memory_limit_bytes) == (0.5, 1 << 30, 8 << 30)
    for bad, message in (("  mem_limit: 4 GB\n", "resources.mem_limit: invalid value"),
                         ("  cpu_limit: two\n", "resources.cpu_limit: invalid value"),
                         ("  gpus: 1\n", "resources.gpus: unknown field"),
                         ("  cpu_guarantee: 0\n", "resources.cpu_guarantee: must be more than 0"),
                         ("  mem_guarantee: 2G\n  mem_limit: 1G\n", "mem_guarantee: must not exceed mem_limit")):
        with pytest.raises(RecipeError, match=message):
            parse(GOOD + "resources:\n" + bad)
