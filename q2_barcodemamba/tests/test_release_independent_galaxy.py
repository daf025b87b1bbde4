"""The Galaxy wrappers do not depend on the QIIME 2 release that generates
them (issue 15): the q2cli requirement names the release the tools are
deployed with (galaxy.QIIME2_EPOCH), so the drift test of galaxy/ passes
under any release. Needs the installed plugin only, so the conda recipe
runs it too (its -k "not test_galaxy" leaves this file's name alone)."""
import os
import xml.etree.ElementTree as ET

import pytest
import qiime2
import qiime2.sdk

from q2_barcodemamba import galaxy


def _all_tools(**kwargs):
    plugin = qiime2.sdk.PluginManager().plugins[galaxy.PLUGIN]
    cases = galaxy.recorded_tests(plugin)
    return {a.id: galaxy.tool_xml(plugin, a, cases.get(a.id, []), **kwargs)
            for a in plugin.actions.values()}


def _q2cli_version(xml):
    root = ET.fromstring(xml.split("\n", 3)[3])  # after the header comment
    return root.find("requirements/requirement[.='q2cli']").get("version")


def test_wrappers_are_the_same_under_another_qiime2_release(monkeypatch):
    here = _all_tools()
    monkeypatch.setattr(qiime2, "__version__", "2099.1.0")
    elsewhere = _all_tools()
    assert here == elsewhere
    for xml in here.values():
        assert _q2cli_version(xml) == galaxy.QIIME2_EPOCH


def test_wrappers_for_another_deployment_release(tmp_path):
    paths = galaxy.generate(str(tmp_path), qiime2_epoch="2025.4")
    assert paths
    for path in paths:
        with open(path) as fh:
            assert _q2cli_version(fh.read()) == "2025.4"


@pytest.mark.parametrize("epoch", ["2024.10.1", "latest", "24.10"])
def test_cli_rejects_what_is_not_a_release(epoch, tmp_path, capsys):
    with pytest.raises(SystemExit):
        galaxy.main(["--output-dir", str(tmp_path), "--qiime2-epoch", epoch])
    assert "--qiime2-epoch" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
