"""The conda recipe (recipe/meta.yaml) and setup.py agree with each other
and with what the package imports and ships."""
import ast
import os
import re
import sys
import unittest

import jinja2
import setuptools
import yaml

import q2_barcodemamba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "q2_barcodemamba")
RECIPE = os.path.join(ROOT, "recipe", "meta.yaml")
# Conda package names of PyPI distributions / import names that differ.
CONDA_NAME = {"torch": "pytorch", "matplotlib": "matplotlib-base",
              "q2_types": "q2-types", "yaml": "pyyaml",
              "mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d",
              "pkg_resources": "setuptools"}
# Run dependencies that come from Debian or conda, never from PyPI, so
# setup.py does not list them.
QIIME_ONLY = {"python", "qiime2", "q2-types", "q2templates"}


def _name(requirement: str) -> str:
    """'torch>=2.1' or 'pytorch >=2.1' -> 'torch' / 'pytorch'."""
    for i, ch in enumerate(requirement):
        if ch in " <>=!~[;":
            return requirement[:i]
    return requirement


def _spec(requirement: str) -> str:
    return requirement[len(_name(requirement)):].replace(" ", "")


def setup_kwargs() -> dict:
    """setup.py's keyword arguments, captured the way conda-build's
    load_setup_py_data() does: run it with setuptools.setup replaced."""
    captured = {}
    real_setup = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with open("setup.py") as fh:
            exec(compile(fh.read(), "setup.py", "exec"),
                 {"__name__": "__main__", "__file__": "setup.py"})
    finally:
        os.chdir(cwd)
        setuptools.setup = real_setup
    return captured


def render_recipe() -> dict:
    with open(RECIPE) as fh:
        template = jinja2.Template(fh.read(), undefined=jinja2.StrictUndefined)
    text = template.render(load_setup_py_data=setup_kwargs, PYTHON="python",
                           python="3.8", qiime2_epoch="2022.11")
    return yaml.safe_load(text)


def imported_modules(paths) -> set:
    """Top-level names of every module imported in the given files."""
    names = set()
    for path in paths:
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def python_files(tests: bool):
    """The package's .py files: only those of tests/ or only the others."""
    for dirpath, _, files in os.walk(PKG):
        in_tests = os.path.relpath(dirpath, PKG).split(os.sep)[0] == "tests"
        if in_tests == tests:
            yield from (os.path.join(dirpath, f) for f in files
                        if f.endswith(".py"))


def _glob_regex(pattern: str) -> str:
    """setuptools package_data glob: '*' stays within one directory."""
    return "".join(".*" if part == "**" else "[^/]*" if part == "*" else
                   re.escape(part) for part in re.split(r"(\*\*|\*)",
                                                        pattern)) + "$"


class RecipeTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.meta = render_recipe()
        cls.setup = setup_kwargs()
        cls.run_deps = cls.meta["requirements"]["run"]

    def test_version_is_the_package_version(self):
        self.assertEqual(self.meta["package"]["name"], "q2-barcodemamba")
        self.assertEqual(str(self.meta["package"]["version"]),
                         q2_barcodemamba.__version__)
        self.assertEqual(self.setup["version"], q2_barcodemamba.__version__)

    def test_noarch_python_and_qiime2_epoch_pins(self):
        self.assertEqual(self.meta["build"]["noarch"], "python")
        pins = {_name(d): _spec(d) for d in self.run_deps}
        for pkg in ("qiime2", "q2-types", "q2templates"):
            self.assertEqual(pins.get(pkg), "2022.11.*", pkg)

    def test_run_deps_are_setup_install_requires_plus_qiime(self):
        conda = {_name(d): _spec(d) for d in self.run_deps}
        pypi = {CONDA_NAME.get(_name(r), _name(r)): _spec(r)
                for r in self.setup["install_requires"]}
        self.assertEqual(set(conda) - QIIME_ONLY, set(pypi))
        self.assertEqual({k: v for k, v in conda.items()
                          if k not in QIIME_ONLY}, pypi)  # same bounds
        self.assertLessEqual(QIIME_ONLY, set(conda))

    def test_every_import_of_the_package_is_a_declared_dependency(self):
        declared = {_name(d) for d in self.run_deps}
        optional = {_name(r) for extra in self.setup["extras_require"]
                    .values() for r in extra}
        known = declared | {CONDA_NAME.get(n, n) for n in optional}
        for names, allowed, what in (
                (imported_modules(python_files(tests=False)), known,
                 "requirements/run"),
                (imported_modules(python_files(tests=True)), known | {
                    _name(d) for d in self.meta["test"]["requires"]},
                 "test/requires")):
            third_party = {n for n in names - set(sys.stdlib_module_names)
                           if n != "q2_barcodemamba"}
            missing = {n for n in third_party
                       if CONDA_NAME.get(n, n) not in allowed}
            self.assertFalse(missing, f"imported but not in {what} of "
                                      f"recipe/meta.yaml")

    def test_recipe_tests_import_the_plugin_and_run_the_cli(self):
        test = self.meta["test"]
        self.assertIn("q2_barcodemamba", test["imports"])
        self.assertIn("qiime2.plugins.barcodemamba", test["imports"])
        self.assertIn("qiime barcodemamba --help", test["commands"])
        pytest_cmd = [c for c in test["commands"]
                      if "py.test --pyargs q2_barcodemamba" in c]
        self.assertEqual(len(pytest_cmd), 1, test["commands"])
        # the conda test env has no browser: the browser checks may skip
        # there, nowhere else; every test of the package runs (the tests
        # that need a source checkout are in tests/, not in the package)
        self.assertIn("Q2BM_ALLOW_NO_BROWSER=1", pytest_cmd[0])
        self.assertNotIn(" -k ", pytest_cmd[0])
        requires = {_name(d) for d in test["requires"]}
        self.assertIn("q2cli", requires)  # `qiime` itself

    def test_package_tests_do_not_need_the_source_checkout(self):
        """What `py.test --pyargs q2_barcodemamba` runs in an installed
        package: no test there reads docs/, galaxy/, recipe/, benchmarks/
        or setup.py, which only a source checkout has."""
        checkout_only = {"docs", "galaxy", "recipe", "benchmarks",
                         "setup.py", "README.md"}
        for path in python_files(tests=True):
            with open(path) as fh:
                tree = ast.parse(fh.read(), path)
            used = {node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant)
                    and node.value in checkout_only}
            self.assertFalse(used, f"{os.path.relpath(path, ROOT)} needs "
                                   f"the source checkout ({used}): move it "
                                   "to the top-level tests/")
        here = os.path.dirname(os.path.abspath(__file__))
        self.assertEqual(here, os.path.join(ROOT, "tests"))

    def test_package_data_ships_every_data_file(self):
        package_data = self.setup["package_data"]
        for dirpath, dirs, files in os.walk(PKG):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f.endswith((".py", ".pyc")):
                    continue
                # the deepest package holding the file owns its glob
                pkg_dir = dirpath
                while not os.path.isfile(os.path.join(pkg_dir,
                                                      "__init__.py")):
                    pkg_dir = os.path.dirname(pkg_dir)
                package = os.path.relpath(pkg_dir, ROOT).replace(os.sep, ".")
                rel = os.path.relpath(os.path.join(dirpath, f), pkg_dir)
                shipped = any(re.match(_glob_regex(g), rel.replace(
                    os.sep, "/")) for g in package_data.get(package, []))
                self.assertTrue(shipped, f"{package}: {rel} is not in "
                                         f"setup.py's package_data, so a "
                                         f"wheel or conda install lacks it")

if __name__ == "__main__":
    unittest.main()
