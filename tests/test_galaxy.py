"""Galaxy wrappers (galaxy/): generated from the registered signatures, the
committed files have not drifted, q2cli knows every option they pass, and
planemo lint passes."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
import zipfile

import q2cli.commands
import q2cli.core.state
import qiime2.sdk
from qiime2.core.type.signature import ParameterSpec
from qiime2.plugin import Bool, Choices, Float, Int, List, Range, Str

from q2_barcodemamba import galaxy
from q2_barcodemamba.galaxy._params import _param

# The wrappers live in the source tree (this file is in its tests/), not
# in the installed package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GALAXY_DIR = os.path.join(ROOT, "galaxy")
REGENERATE = ".venv/bin/python -m q2_barcodemamba.galaxy --output-dir galaxy"


def plugin():
    return qiime2.sdk.PluginManager().plugins[galaxy.PLUGIN]


def parse(action):
    return ET.parse(os.path.join(GALAXY_DIR, galaxy.tool_id(action)
                                 + ".xml")).getroot()


def q2cli_options(action) -> dict:
    """{option: click parameter} of the action's q2cli command, built by
    q2cli from the live plugin (not from q2cli's possibly stale cache)."""
    state = q2cli.core.state.get_plugin_state(plugin())
    action_state = dict(state["actions"][action.id], epilog=[])
    cmd = q2cli.commands.ActionCommand(action.id.replace("_", "-"), state,
                                       action_state)
    return {opt: p for p in cmd.params
            for opt in (*p.opts, *p.secondary_opts)}


class CommittedWrappersTests(unittest.TestCase):
    def test_committed_wrappers_equal_freshly_generated_ones(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-m", "q2_barcodemamba.galaxy",
                 "--output-dir", tmp], capture_output=True, text=True,
                check=True).stdout
            fresh = sorted(f for f in os.listdir(tmp) if f.endswith(".xml"))
            committed = sorted(f for f in os.listdir(GALAXY_DIR)
                               if f.endswith(".xml"))
            self.assertEqual(len(out.split()), len(plugin().actions))
            self.assertEqual(
                committed, fresh,
                f"galaxy/ has other tools than the plugin's actions; run "
                f"`{REGENERATE}` and remove stale files")
            for name in fresh:
                with open(os.path.join(tmp, name)) as a, \
                        open(os.path.join(GALAXY_DIR, name)) as b:
                    self.assertEqual(
                        b.read(), a.read(),
                        f"galaxy/{name} is out of date: run `{REGENERATE}`")

    def test_one_tool_per_action_with_every_input_parameter_output(self):
        self.assertGreaterEqual(len(plugin().actions), 4)
        for action in plugin().actions.values():
            tool = parse(action)
            sig = action.signature
            self.assertEqual(tool.get("id"), f"qiime2__barcodemamba__"
                                             f"{action.id}")
            wrapped = {el.get("name") for el in tool.find("inputs")
                       if el.tag in ("param", "conditional")}
            self.assertEqual(wrapped, set(sig.inputs) | set(sig.parameters),
                             action.id)
            outputs = {d.get("name"): d.get("format")
                       for d in tool.find("outputs")}
            self.assertEqual(set(outputs), set(sig.outputs))
            for name, fmt in outputs.items():
                self.assertEqual(fmt, "qzv" if action.type == "visualizer"
                                 else "qza")
            for name, spec in sig.inputs.items():
                param = tool.find(f"inputs/param[@name='{name}']")
                self.assertEqual(param.get("format"), "qza")
                self.assertIn(str(spec.qiime_type).replace("List[", "")
                              .rstrip("]"), param.find("validator").text)
            self.assertTrue(tool.findall("tests/test"),
                            f"{action.id} has no Galaxy test: give it a "
                            f"usage example (_examples.py)")
            self.assertIn(action.description.split()[0],
                          tool.find("help").text)
            self.assertEqual(tool.find("requirements/requirement").text,
                             "q2-barcodemamba")

    def test_parameter_types_ranges_choices_and_defaults(self):
        def param(qiime_type, default=ParameterSpec.NOVALUE):
            return _param("x", ParameterSpec(qiime_type=qiime_type,
                                             default=default,
                                             description="An x."))
        el, cmd = param(Int % Range(1, None), 20)
        self.assertEqual((el.get("type"), el.get("min"), el.get("max"),
                          el.get("value")), ("integer", "1", None, "20"))
        self.assertEqual(cmd, ["--p-x '$x'"])
        el, _ = param(Int % Range(0, 10))  # required, end exclusive
        self.assertEqual((el.get("min"), el.get("max"), el.get("value"),
                          el.get("help")), ("0", "9", "0", "[required] An x."))
        el, _ = param(Float % Range(0, 1, inclusive_start=False), 0.003)
        self.assertEqual((el.get("type"), el.get("min"), el.get("max"),
                          el.get("value")), ("float", "0", "1", "0.003"))
        check = el.find("validator[@type='in_range']")
        self.assertEqual((check.get("exclude_min"), check.get("exclude_max")),
                         ("true", "true"))
        el, _ = param(Float % Range(0, 0.5, inclusive_end=True), 0.1)
        self.assertIsNone(el.find("validator"))
        el, cmd = param(Bool, True)
        self.assertEqual((el.get("type"), el.get("truevalue"),
                          el.get("falsevalue"), el.get("checked")),
                         ("boolean", "--p-x", "--p-no-x", "true"))
        self.assertEqual(cmd, ["$x"])
        el, _ = param(Str % Choices(["tiny", "small"]), "tiny")
        self.assertEqual([(o.get("value"), o.get("selected"))
                          for o in el.findall("option")],
                         [("tiny", "true"), ("small", None)])
        el, cmd = param(List[Str], None)  # optional, q2cli repeats --p-x
        self.assertEqual((el.get("type"), el.get("optional")),
                         ("text", "true"))
        self.assertIn("#for $v in str($x).split():", cmd)
        self.assertIn("--p-x '$v'", cmd)
        el, cmd = param(Float % Range(0, 1, inclusive_end=True)
                        | Str % Choices(["auto", "disable"]), "auto")
        self.assertEqual(el.tag, "conditional")
        self.assertEqual([(o.get("value"), o.get("selected"))
                          for o in el.findall("param/option")],
                         [("auto", "true"), ("disable", None),
                          ("__float__", None)])
        value = el.find("when[@value='__float__']/param")
        self.assertEqual((value.get("type"), value.get("min"),
                          value.get("max")), ("float", "0", "1"))
        self.assertEqual(cmd[:2], ["#if str($x.type) == '__float__':",
                                   "--p-x '$x.value'"])
        el, _ = param(Float % Range(0, 1, inclusive_start=False)
                      | Str % Choices(["auto"]), "auto")
        value = el.find("when[@value='__float__']/param")
        self.assertEqual(value.get("value"), "0.5")  # inside the range

    def test_command_uses_only_options_q2cli_knows(self):
        for action in plugin().actions.values():
            command = parse(action).find("command").text
            lines = [ln.strip() for ln in command.splitlines() if ln.strip()]
            self.assertEqual(lines[0], f"qiime barcodemamba "
                                       f"{action.id.replace('_', '-')}")
            known = q2cli_options(action)
            used = set(re.findall(r"--[a-z][a-z0-9-]*", command))
            self.assertFalse(used - set(known), action.id)
            for option, param in known.items():
                if param.required:
                    self.assertIn(option, used, action.id)
                if option in used and param.multiple:  # q2cli: repeat it
                    at = next(i for i, ln in enumerate(lines)
                              if option in ln)
                    self.assertTrue(lines[at - 1].startswith("#for "),
                                    f"{action.id} {option}")
            for name in action.signature.parameters:
                # a boolean is passed as $name (its true/false value)
                self.assertRegex(command, rf"\${name}\b")

    def test_tests_name_test_data_after_the_usage_examples(self):
        cases = galaxy.recorded_tests(plugin())
        for action in plugin().actions.values():
            tests = parse(action).findall("tests/test")
            self.assertEqual(len(tests), len(cases[action.id]))
            for test, (example, inputs, _) in zip(tests, cases[action.id]):
                for name in set(action.signature.inputs) & set(inputs):
                    files = test.find(f"param[@name='{name}']").get("value")
                    expected = [galaxy.test_data_name(example, v)
                                for v in galaxy._variables(inputs[name])]
                    self.assertEqual(files.split(","), expected)
                    self.assertTrue(all(f.startswith(example + ".")
                                        for f in expected))


def planemo_path():
    """planemo from `make test`'s own venv (.venv/planemo), else PATH."""
    for candidate in (os.path.join(sys.prefix, "planemo", "bin", "planemo"),
                      os.path.join(ROOT, ".venv", "planemo", "bin",
                                   "planemo")):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("planemo")


class PlanemoLintTests(unittest.TestCase):
    def test_planemo_lint_passes_at_warn_level(self):
        planemo = planemo_path()
        if planemo is None:
            if os.environ.get("Q2BM_ALLOW_NO_PLANEMO") == "1":
                self.skipTest("planemo not installed and "
                              "Q2BM_ALLOW_NO_PLANEMO=1")
            self.fail("planemo not found: run `make .venv/.stamps/planemo` "
                      "(or set Q2BM_ALLOW_NO_PLANEMO=1 to skip this test)")
        run = subprocess.run([planemo, "lint", "--fail_level", "warn",
                              GALAXY_DIR], capture_output=True, text=True,
                             timeout=300)
        report = run.stdout + run.stderr
        self.assertEqual(run.returncode, 0, report)
        linted = re.findall(r"Linting tool \S+", report)
        self.assertEqual(len(linted), len(plugin().actions), report)
        self.assertNotIn("Failed linting", report)
        self.assertNotRegex(report, r"\.\. (WARNING|ERROR)")


# ------------------------------------------- the tools' tests, run like Galaxy
RENDER = """
import json, sys
from Cheetah.Template import Template
jobs = json.load(sys.stdin)
print(json.dumps([str(Template(t, searchList=[ns])) for t, ns in jobs]))
"""


def _param_value(el, given, test_data):
    """What Galaxy puts in the Cheetah namespace for one <param>."""
    kind = el.get("type")
    value = given.get(el.get("name"))
    if kind == "data":
        if value is None:
            return None
        paths = [os.path.join(test_data, f) for f in value.split(",")]
        return paths if el.get("multiple") == "true" else paths[0]
    if kind == "boolean":
        on = (value or el.get("checked", "false")) == "true"
        return el.get("truevalue") if on else el.get("falsevalue")
    if kind == "select" and value is None:
        options = el.findall("option")
        chosen = [o for o in options if o.get("selected") == "true"]
        if not chosen and el.get("optional") == "true":
            return None
        return (chosen or options)[0].get("value")
    return el.get("value", "") if value is None else value


def galaxy_namespace(tool, test, test_data) -> dict:
    """Cheetah namespace of one <test>: defaults overridden by its params."""
    ns = {}
    given = {p.get("name"): p.get("value") for p in test.findall("param")}
    for el in tool.find("inputs"):
        if el.tag == "param":
            ns[el.get("name")] = _param_value(el, given, test_data)
        else:  # conditional: selector 'type' and the chosen <when>'s params
            cond = test.find(f"conditional[@name='{el.get('name')}']")
            inner = {} if cond is None else {
                p.get("name"): p.get("value") for p in cond.findall("param")}
            branch = {"type": _param_value(el.find("param"), inner,
                                           test_data)}
            for p in el.findall(f"when[@value='{branch['type']}']/param"):
                branch[p.get("name")] = _param_value(p, inner, test_data)
            ns[el.get("name")] = branch
    return ns


def check_output(path, output):
    """Galaxy's has_archive_member / has_text / has_line_matching."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for member in output.iter("has_archive_member"):
            hit = next(n for n in names if re.match(member.get("path"), n))
            text = zf.read(hit).decode()
            for check in member:
                if check.tag == "has_text":
                    assert check.get("text") in text, (hit, check.attrib)
                else:
                    assert re.search(f"^{check.get('expression')}$", text,
                                     flags=re.MULTILINE), (hit, check.attrib)


class GalaxyToolTestsRunTests(unittest.TestCase):
    """Each tool's <tests>, run the way Galaxy would: test-data from the
    usage examples, the <command> rendered by Cheetah (from planemo's venv)
    and joined into one line, run with this environment's `qiime`, and the
    outputs checked with the tests' assertions."""

    def test_every_tool_test_runs_and_passes_its_assertions(self):
        planemo = planemo_path()
        python = planemo and os.path.join(os.path.dirname(planemo), "python")
        if not python or not os.access(python, os.X_OK):
            if os.environ.get("Q2BM_ALLOW_NO_PLANEMO") == "1":
                self.skipTest("planemo's venv (Cheetah) not installed")
            self.fail("planemo's venv not found: run "
                      "`make .venv/.stamps/planemo`")
        with tempfile.TemporaryDirectory() as tmp:
            test_data = os.path.join(tmp, "test-data")
            galaxy.write_test_data(plugin(), test_data)
            jobs = []
            for action in sorted(plugin().actions.values(),
                                 key=lambda a: a.id):
                tool = parse(action)
                for i, test in enumerate(tool.findall("tests/test")):
                    jobs.append((action.id, i, tool, test, [
                        tool.find("command").text,
                        galaxy_namespace(tool, test, test_data)]))
            rendered = json.loads(subprocess.run(
                [python, "-c", RENDER], check=True, capture_output=True,
                text=True, input=json.dumps([j[-1] for j in jobs])).stdout)
            env = dict(os.environ, PATH=os.path.join(sys.prefix, "bin")
                       + os.pathsep + os.environ.get("PATH", ""))
            for (action_id, i, tool, test, _), command in zip(jobs,
                                                               rendered):
                with self.subTest(tool=action_id, test=i):
                    # Galaxy strips each line, then joins them with spaces
                    line = " ".join(ln.strip() for ln in
                                    command.splitlines()).strip()
                    job = os.path.join(tmp, f"{action_id}-{i}")
                    os.makedirs(job)
                    run = subprocess.run(["bash", "-c", line], cwd=job,
                                         env=env, capture_output=True,
                                         text=True, timeout=900)
                    self.assertEqual(run.returncode, 0,
                                     line + "\n" + run.stderr[-3000:])
                    self.assertEqual(len(tool.findall("outputs/data")),
                                     int(test.get("expect_num_outputs")))
                    for output in test.findall("output"):
                        data = tool.find(f"outputs/data[@name='"
                                         f"{output.get('name')}']")
                        check_output(os.path.join(
                            job, data.get("from_work_dir")), output)
            self.assertEqual(len(jobs), sum(
                len(parse(a).findall("tests/test"))
                for a in plugin().actions.values()))


if __name__ == "__main__":
    unittest.main()
