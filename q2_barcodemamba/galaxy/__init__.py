"""Galaxy tool wrappers generated from the plugin's registered signatures.

    python -m q2_barcodemamba.galaxy --output-dir galaxy [--test-data]
        [--qiime2-epoch 2024.10]

writes one ``<tool>`` XML per registered action, in the style of q2galaxy:
inputs are ``qza`` datasets filtered by semantic type, parameters keep their
ranges, choices and defaults, outputs are ``qza``/``qzv`` datasets, and help
and citations come from the registrations, so the wrappers cannot drift from
the plugin. Each tool's ``<tests>`` are its usage examples (``_examples.py``),
recorded without running them; ``--test-data`` runs the example factories
and saves the test inputs under ``<output-dir>/test-data/``.

The wrappers do not depend on the QIIME 2 release that generates them: the
q2cli requirement names the release the tools are deployed with
(:data:`QIIME2_EPOCH`, or ``--qiime2-epoch``), not ``qiime2.__version__``.
"""
import argparse
import os
import re
import xml.etree.ElementTree as ET

import qiime2
import qiime2.sdk
from qiime2.core.type.util import is_union, is_visualization_type
from qiime2.plugin import Citations

from ._params import _desc, _input, _opt, _param, _predicate
from ._usage import (_EXT, _variables, recorded_tests, test_data_name,
                     write_test_data)

__all__ = ["generate", "main", "recorded_tests", "test_data_name",
           "tool_id", "tool_xml", "write_test_data"]

PLUGIN = "barcodemamba"
PROFILE = "22.05"  # first Galaxy release with the qza/qzv datatypes
# The QIIME 2 release (epoch) the tools ask Galaxy for: a deployment target,
# one of the conda recipe's variants (recipe/conda_build_config.yaml), not
# the release the generator runs in, so that the committed wrappers are the
# same whichever QIIME 2 generates them. Galaxy's conda resolver asks for
# q2cli=2024.10, which conda matches with any 2024.10.x.
QIIME2_EPOCH = "2024.10"
_CDATA = "@@COMMAND@@"


def tool_id(action) -> str:
    return f"qiime2__{PLUGIN}__{action.id}"


def _out_file(name, spec):
    ext = "qzv" if is_visualization_type(spec.qiime_type) else "qza"
    return ext, f"{name}.{ext}"


def _test(action, example_name, inputs, outputs):
    """A Galaxy <test> from one recorded ``use.action`` call."""
    sig = action.signature
    test = ET.Element("test", expect_num_outputs=str(len(sig.outputs)))
    for name, value in inputs.items():
        variables = _variables(value)
        if variables:
            ET.SubElement(test, "param", name=name, value=",".join(
                test_data_name(example_name, v) for v in variables),
                ftype=_EXT[variables[0].var_type].replace("tsv", "tabular"))
            if variables[0].column is not None:
                ET.SubElement(test, "param", name=f"{name}_column",
                              value=variables[0].column)
        elif is_union(sig.parameters[name].qiime_type):
            cond = ET.SubElement(test, "conditional", name=name)
            members = list(sig.parameters[name].qiime_type)
            choice = any(str(value) in map(str, _predicate(m).get(
                "choices", ())) for m in members)
            if choice:
                ET.SubElement(cond, "param", name="type", value=str(value))
            else:
                kind = next(m.name for m in members
                            if m.name in ("Int", "Float"))
                ET.SubElement(cond, "param", name="type",
                              value=f"__{kind.lower()}__")
                ET.SubElement(cond, "param", name="value", value=str(value))
        else:
            text = " ".join(map(str, value)) if isinstance(
                value, (list, set, tuple)) else str(value)
            ET.SubElement(test, "param", name=name, value=text.lower()
                          if isinstance(value, bool) else text)
    for name, spec in sig.outputs.items():
        ext, _ = _out_file(name, spec)
        out = ET.SubElement(test, "output", name=name, ftype=ext)
        contents = ET.SubElement(out, "assert_contents")
        var = outputs.get(name)
        checks = list(var.assertions) if var is not None else []
        if ("type", str(spec.qiime_type)) not in checks and \
                len(list(spec.qiime_type)) == 1:
            checks.insert(0, ("type", str(spec.qiime_type)))
        for check in checks:
            if check[0] == "type":
                member = ET.SubElement(contents, "has_archive_member",
                                       path="[^/]+/metadata.yaml")
                ET.SubElement(member, "has_text", text=f"type: {check[1]}")
            else:
                # QIIME 2: a glob under data/ and re.search in the file;
                # Galaxy: a regex path and a regex for a whole line.
                glob = re.escape(check[1]).replace(r"\*", "[^/]*") \
                    .replace(r"\?", "[^/]")
                member = ET.SubElement(contents, "has_archive_member",
                                       path=f"[^/]+/data/{glob}$")
                ET.SubElement(member, "has_line_matching",
                              expression=f".*(?:{check[2]}).*")
    return test


def _rst(text: str) -> str:
    return re.sub(r"([\\`*_|])", r"\\\1", " ".join(text.split()))


def _help(plugin, action) -> str:
    cli = f"qiime {PLUGIN} {action.id.replace('_', '-')}"
    title = f"QIIME 2: {cli}"
    lines = [title, "=" * len(title), _rst(action.name), "", "Outputs:",
             "--------"]
    for name, spec in action.signature.outputs.items():
        lines.append(f":{_out_file(name, spec)[1]}: "
                     f"{_rst(_desc(spec))}")
    lines += ["", "Description:", "------------", _rst(action.description),
              "", f"Generated from ``{plugin.name}`` {plugin.version} by "
              "``python -m q2_barcodemamba.galaxy``; the same action on the "
              f"command line is ``{cli}``.", ""]
    return "\n".join(lines)


def _citations(plugin, action):
    known = list(Citations.load("citations.bib",
                                package=plugin.package).items())
    el = ET.Element("citations")
    seen = []
    for rec in (*action.citations, *plugin.citations,
                *qiime2.__citations__):
        if rec in seen:
            continue
        seen.append(rec)
        cite = ET.SubElement(el, "citation")
        if "doi" in rec.fields:
            cite.set("type", "doi")
            cite.text = rec.fields["doi"]
        else:
            cite.set("type", "bibtex")
            fields = ",\n".join(f"  {k} = {{{v}}}" for k, v in
                                sorted(rec.fields.items()))
            key = next((k for k, r in known if r == rec), f"ref{len(seen)}")
            cite.text = f"@{rec.type}{{{key},\n{fields}\n}}"
    return el


def tool_xml(plugin, action, cases, qiime2_epoch=QIIME2_EPOCH) -> str:
    """The Galaxy tool XML (text) of one action, for QIIME 2
    ``qiime2_epoch``."""
    sig = action.signature
    tool = ET.Element("tool", id=tool_id(action),
                      name=f"qiime2 {PLUGIN} {action.id.replace('_', '-')}",
                      version=f"{plugin.version}+galaxy0", profile=PROFILE,
                      license="BSD-3-Clause")
    ET.SubElement(tool, "description").text = action.name
    reqs = ET.SubElement(tool, "requirements")
    ET.SubElement(reqs, "requirement", type="package",
                  version=plugin.version).text = "q2-barcodemamba"
    ET.SubElement(reqs, "requirement", type="package",
                  version=qiime2_epoch).text = "q2cli"
    ET.SubElement(tool, "version_command").text = f"qiime {PLUGIN} --version"
    command = ET.SubElement(tool, "command", detect_errors="exit_code")
    command.text = _CDATA
    inputs = ET.SubElement(tool, "inputs")
    lines = [f"qiime {PLUGIN} {action.id.replace('_', '-')}"]
    for name, spec in sig.inputs.items():
        el, cmd = _input(name, spec)
        inputs.append(el)
        lines += cmd
    for name, spec in sig.parameters.items():
        el, cmd = _param(name, spec)
        inputs.extend(el if isinstance(el, list) else [el])
        lines += cmd
    outputs = ET.SubElement(tool, "outputs")
    for name, spec in sig.outputs.items():
        ext, fname = _out_file(name, spec)
        ET.SubElement(outputs, "data", name=name, format=ext,
                      from_work_dir=fname,
                      label="${tool.id} on ${on_string}: " + fname)
        lines.append(f"{_opt('o', name)} {fname}")
    lines.append("--verbose")
    tests = ET.SubElement(tool, "tests")
    for case in cases:
        tests.append(_test(action, *case))
    ET.SubElement(tool, "help").text = _CDATA
    tool.append(_citations(plugin, action))
    ET.indent(tool, space="    ")
    text = ET.tostring(tool, encoding="unicode")
    text = text.replace(f"<command detect_errors=\"exit_code\">{_CDATA}",
                        "<command detect_errors=\"exit_code\"><![CDATA[\n"
                        + "\n".join(lines) + "\n    ]]>", 1)
    text = text.replace(f"<help>{_CDATA}", "<help><![CDATA[\n"
                        + _help(plugin, action) + "\n    ]]>", 1)
    return ("<?xml version='1.0' encoding='utf-8'?>\n<!-- Generated by "
            "`python -m q2_barcodemamba.galaxy` from the registered "
            "signature of\n     qiime " + PLUGIN + " " +
            action.id.replace("_", "-") + ". Do not edit: regenerate. -->\n"
            + text + "\n")


def generate(output_dir: str, test_data: bool = False,
             qiime2_epoch: str = QIIME2_EPOCH) -> list:
    """Write one tool XML per registered action; return the file paths."""
    plugin = qiime2.sdk.PluginManager().plugins[PLUGIN]
    tests = recorded_tests(plugin)
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for action in sorted(plugin.actions.values(), key=lambda a: a.id):
        path = os.path.join(output_dir, tool_id(action) + ".xml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(tool_xml(plugin, action, tests.get(action.id, []),
                              qiime2_epoch))
        paths.append(path)
    if test_data:
        write_test_data(plugin, os.path.join(output_dir, "test-data"))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m q2_barcodemamba.galaxy",
        description="Write Galaxy tool wrappers of every q2-barcodemamba "
                    "action.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--test-data", action="store_true",
                        help="also run the usage examples' factories and "
                             "save missing test inputs in test-data/ "
                             "(trains small classifiers and a backbone: "
                             "a few minutes on a CPU)")
    parser.add_argument("--qiime2-epoch", default=QIIME2_EPOCH,
                        help="QIIME 2 release the tools ask Galaxy for "
                             "(q2cli's version; default %(default)s)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d{4}\.\d{1,2}", args.qiime2_epoch):
        parser.error(f"--qiime2-epoch {args.qiime2_epoch}: expected a "
                     f"release such as {QIIME2_EPOCH}")
    for path in generate(args.output_dir, args.test_data,
                         args.qiime2_epoch):
        print(path)

