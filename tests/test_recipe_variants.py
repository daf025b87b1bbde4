"""recipe/meta.yaml renders for every build variant of
recipe/conda_build_config.yaml (QIIME 2 2022.11 with Python 3.8, 2024.10
with Python 3.10) with that variant's pins, the bounds that keep `qiime`
working (issue 15), and the release the Galaxy wrappers ask for. Renders
with jinja2 the way conda-build does (conda-build is not on PyPI); a source
checkout test."""
import itertools
import os
import re

import jinja2
import pytest
import yaml

import q2_barcodemamba
from q2_barcodemamba import install_check

from test_packaging import setup_kwargs  # tests/ is on sys.path (rootdir)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipe")
# The Python of each QIIME 2 release's conda environment.
RELEASE_PYTHON = {"2022.11": "3.8", "2024.10": "3.10"}

def variants():
    """conda-build's variants: zip_keys advance together, the other keys
    multiply."""
    with open(os.path.join(RECIPE, "conda_build_config.yaml")) as fh:
        config = yaml.safe_load(fh)
    zipped = config.pop("zip_keys", [])
    if zipped and isinstance(zipped[0], str):
        zipped = [zipped]
    groups = [[dict(zip(keys, values)) for values in
               zip(*(config.pop(k) for k in keys))] for keys in zipped]
    groups += [[{k: v} for v in values] for k, values in config.items()]
    return [{k: v for part in combo for k, v in part.items()}
            for combo in itertools.product(*groups)]


def render(variant):
    with open(os.path.join(RECIPE, "meta.yaml")) as fh:
        template = jinja2.Template(fh.read(),
                                   undefined=jinja2.StrictUndefined)
    return yaml.safe_load(template.render(
        load_setup_py_data=setup_kwargs, PYTHON="python", **variant))


def pins(deps):
    """{'qiime2': '2024.10.*', 'click': '<8.2', ...}"""
    out = {}
    for dep in deps:
        name, _, spec = dep.partition(" ")
        out[name] = spec.replace(" ", "")
    return out


def test_variants_are_the_supported_releases_with_their_python():
    found = {(v["qiime2_epoch"], v["python"]) for v in variants()}
    assert found == set(RELEASE_PYTHON.items())
    for v in variants():  # strings: unquoted YAML reads 3.10 as 3.1
        assert all(isinstance(x, str) for x in v.values()), v


@pytest.mark.parametrize("variant", variants(),
                         ids=lambda v: f"qiime2-{v['qiime2_epoch']}")
def test_recipe_renders_with_the_variant_pins(variant):
    epoch, python = variant["qiime2_epoch"], variant["python"]
    meta = render(variant)
    assert meta["package"]["version"] == q2_barcodemamba.__version__
    assert meta["build"]["noarch"] == "python"
    run = pins(meta["requirements"]["run"])
    assert run["python"] == python
    assert pins(meta["requirements"]["host"])["python"] == python
    for pkg in ("qiime2", "q2-types", "q2templates"):
        assert run[pkg] == f"{epoch}.*", pkg
    test = pins(meta["test"]["requires"])
    for pkg in ("q2cli", "q2-feature-table", "q2-taxa"):
        assert test[pkg] == f"{epoch}.*", pkg
    # the bounds that keep `qiime` working, as setup.py declares them
    assert run["click"] == "<8.2"
    assert run["setuptools"] == "<81"
    declared = {re.split(r"[<>=!~ ]", r, 1)[0]: r for r in
                setup_kwargs()["install_requires"]}
    assert declared["click"] == "click<8.2"
    assert declared["setuptools"] == "setuptools<81"
    assert "python -m q2_barcodemamba.install_check" in \
        meta["test"]["commands"]


def test_rendered_bounds_satisfy_the_install_check():
    for variant in variants():
        meta = render(variant)
        graph = {install_check.DIST: [
            f"{n}{s}" for n, s in pins(meta["requirements"]["run"]).items()
            if n in ("click", "setuptools")]}
        needs = [n for n in (install_check.q2cli_click_need(None),
                             install_check.qiime2_setuptools_need(
                                 "import pkg_resources"))]
        assert install_check.check(graph, needs) == [], variant


def test_galaxy_wrappers_ask_for_a_release_the_recipe_builds():
    from q2_barcodemamba import galaxy
    assert galaxy.QIIME2_EPOCH in {v["qiime2_epoch"] for v in variants()}
    for name in os.listdir(os.path.join(ROOT, "galaxy")):
        if name.endswith(".xml"):
            with open(os.path.join(ROOT, "galaxy", name)) as fh:
                assert (f'version="{galaxy.QIIME2_EPOCH}">q2cli<'
                        in fh.read()), name
