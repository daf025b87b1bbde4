"""Installing the plugin must not break `qiime` (issue 15): the click and
setuptools that the plugin's declared requirements let pip install are ones
the installed q2cli and qiime2 can load, and pkg_resources (which qiime2
loads plugins with) accepts the installed requirement tree. Needs only
installed metadata and the installed framework's source, so it runs in the
conda recipe's tests too."""
import importlib.metadata as metadata

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from q2_barcodemamba import install_check as ic

# What every QIIME 2 release checked for issue 15 needs (docs/install.md):
# the plugin's own requirements must stay inside it whatever QIIME 2 this
# test runs in, so that a conda 2024.10+ user is protected by a CI that
# runs Debian's 2022.11.
KNOWN_NEEDS = [
    ic.Need("click", SpecifierSet("<8.2"), "q2cli 2022.11 and 2024.5",
            "make_metavar() without ctx; is_bool_flag has no setter"),
    ic.Need("setuptools", SpecifierSet("<81"), "qiime2 2022.11 to 2024.10",
            "plugin manager imports pkg_resources"),
]

# The lines of q2cli/click/option.py (2022.11.1 and 2024.5.0 alike) that
# the rules look for, and qiime2/sdk/plugin_manager.py's import.
Q2CLI_OPTION = """
class GeneratedOption(click.Option):
    def __init__(self, *, prefix, name, repr, ast, multiple, is_bool_flag,
                 metavar, description=None, default_missing=False, **attrs):
        self.is_bool_flag = is_bool_flag
    def get_help_record(self, ctx):
        record = super().get_help_record(ctx)
        if self.is_bool_flag:
            metavar = self.make_metavar()
"""
PLUGIN_MANAGER_PKG_RESOURCES = "import os\nimport pkg_resources\n"
PLUGIN_MANAGER_IMPORTLIB = "from importlib.metadata import entry_points\n"


def test_installed_qiime2_loads_with_what_the_plugin_declares():
    found = ic.problems()
    assert not found, "\n\n".join(found)


def test_declared_requirements_bound_click_and_setuptools_for_every_release():
    own = {ic.DIST: metadata.requires(ic.DIST)}
    found = ic.check(own, KNOWN_NEEDS)
    assert not found, "\n\n".join(found)


def _admits(spec, *versions):
    return [v for v in versions if spec.contains(v)]


def test_installed_framework_needs_are_read_from_its_source():
    needs = {n.package: n for n in ic.framework_needs()}
    q2cli = metadata.version("q2cli")
    if q2cli.startswith(("2022.11.", "2024.5.")):  # both read and run here
        assert _admits(needs["click"].allowed, "8.1.3", "8.1.8", "8.2.0",
                       "8.4.2", "8.5.1") == ["8.1.3", "8.1.8"], needs
    qiime2 = metadata.version("qiime2")
    if qiime2.startswith(("2022.11.", "2024.5.")):
        assert needs["setuptools"].allowed == SpecifierSet("<81"), needs


ADAPTED = Q2CLI_OPTION.replace("self.make_metavar()", "self.make_metavar(ctx)")


@pytest.mark.parametrize("source, admitted", [
    (Q2CLI_OPTION, ["8.1.8"]),                        # 2022.11, 2024.5
    (ADAPTED, ["8.2.0", "8.4.2"]),                    # make_metavar(ctx)
    (ADAPTED.replace("self.is_bool_flag = is_bool_flag", ""),
     ["8.2.0", "8.4.2", "8.5.1"]),                    # both adapted
    ("class GeneratedOption(click.Option): pass", None),
    (None, ["8.1.8"]),  # q2cli's source unreadable: the bound of every release
])
def test_q2cli_click_bound_from_source(source, admitted):
    need = ic.q2cli_click_need(source, "2099.1.0")
    if admitted is None:
        assert need is None
    else:
        assert need.package == "click"
        assert _admits(need.allowed, "8.1.8", "8.2.0", "8.4.2",
                       "8.5.1") == admitted
        assert need.framework == "q2cli 2099.1.0"


def test_plugin_bound_against_a_q2cli_adapted_to_click_8_2_is_reported():
    found = ic.check(GOOD, [ic.q2cli_click_need(ADAPTED, "2099.1.0")])
    assert len(found) == 1 and found[0].startswith(
        "click: no version satisfies"), found


@pytest.mark.parametrize("source, needs_bound", [
    (PLUGIN_MANAGER_PKG_RESOURCES, True),
    ("import pkg_resources as pr\n", True),
    ("from pkg_resources import iter_entry_points\n", True),
    (PLUGIN_MANAGER_IMPORTLIB, False),
    ("# no longer uses pkg_resources\n" + PLUGIN_MANAGER_IMPORTLIB, False),
    (None, False),
])
def test_setuptools_bound_only_where_qiime2_imports_pkg_resources(
        source, needs_bound):
    need = ic.qiime2_setuptools_need(source, "2024.10.0")
    assert (need is not None) == needs_bound
    if need:
        assert str(need.allowed) == "<81"
        assert "pkg_resources" in need.reason


GOOD = {
    ic.DIST: ["torch>=2.1", "tokenizers>=0.15", "click<8.2",
              "setuptools<81"],
    "torch": ["setuptools>=77.0.3", "sympy>=1.13.3"],
    "tokenizers": ["huggingface-hub<3.0,>=0.16.4"],
    "huggingface-hub": ["typer>=0.20.0"],
    "typer": ["click>=8.0.0"],
}


def _without(graph, dist, name):
    return dict(graph, **{dist: [r for r in graph[dist]
                                 if not r.startswith(name)]})


def test_good_requirement_set_passes():
    assert ic.check(GOOD, KNOWN_NEEDS) == []


@pytest.mark.parametrize("graph, words", [
    # issue 15: torch 2.13 asks setuptools>=77.0.3 and nothing caps it
    (_without(GOOD, ic.DIST, "setuptools"),
     ["setuptools", "torch asks 'setuptools>=77.0.3'", "setuptools 81",
      "'setuptools<81'", "install_requires", "pkg_resources"]),
    # issue 15: tokenizers -> huggingface-hub 2.x asks click>=8.4.2, and
    # no click that q2cli can load is left: pip takes click 8.5
    (dict(_without(GOOD, ic.DIST, "click"),
          **{"huggingface-hub": ["click<9.0.0,>=8.4.2"]}),
     ["click", "huggingface-hub asks 'click<9.0.0,>=8.4.2'", "'click<8.2'",
      "install_requires", "make_metavar"]),
    # a bound, but too loose for q2cli
    (dict(GOOD, **{ic.DIST: ["torch>=2.1", "click<9", "setuptools<81"]}),
     ["click 8.2", "q2-barcodemamba asks 'click<9'", "'click<8.2'"]),
    # nothing asks for click today: the next dependency release could
    ({ic.DIST: ["torch>=2.1", "setuptools<81"],
      "torch": ["setuptools>=77.0.3"]},
     ["click", "nothing bounds click", "'click<8.2'"]),
    # bounded, but against a dependency: no version fits both
    (dict(GOOD, **{"huggingface-hub": ["click<9.0.0,>=8.4.2"]}),
     ["click: no version satisfies", "huggingface-hub asks "
      "'click<9.0.0,>=8.4.2'", "q2-barcodemamba asks 'click<8.2'",
      "pip install q2-barcodemamba 'click<8.2'", "huggingface-hub"]),
    (dict(GOOD, torch=["setuptools>=81"]),
     ["setuptools: no version satisfies", "torch asks 'setuptools>=81'"]),
])
def test_bad_requirement_sets_fail_naming_package_specifier_and_fix(
        graph, words):
    found = ic.check(graph, KNOWN_NEEDS)
    assert len(found) == 1, found
    for word in words:
        assert word in found[0], (word, found[0])


@pytest.mark.parametrize("versions, bad", [
    ({"click": "8.1.8", "setuptools": "80.8.0"}, []),
    ({"click": "8.5.1", "setuptools": "80.8.0"}, ["click 8.5.1"]),
    ({"click": "8.1.3", "setuptools": "84.2.1"}, ["setuptools 84.2.1"]),
    ({}, []),  # neither installed
])
def test_installed_versions_outside_the_needs_fail(versions, bad):
    found = ic.installed_check(KNOWN_NEEDS, versions)
    assert [f.split(" is installed")[0] for f in found] == bad, found
    for f in found:
        assert "Fix: pip install '" in f


def test_no_needs_no_problems():
    # a QIIME 2 that needs nothing of click or setuptools (none installed,
    # or a release that fixed both) accepts any requirement set
    assert ic.check(_without(GOOD, ic.DIST, "click"), []) == []


def test_probes_cover_every_interval_between_boundaries():
    spec = SpecifierSet(">=77.0.3,<81")
    probes = ic._probes(list(spec))
    assert any(spec.contains(v) for v in probes)
    assert any(v >= Version("81") for v in probes)
    assert any(v < Version("77.0.3") for v in probes)
    # just below the bound: what pip's newest-first choice lands on
    assert max(v for v in probes if v < Version("81")) > Version("80.99")


def test_cli_reports_and_exit_code(capsys):
    assert ic.main() == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out
