"""Will the QIIME 2 this plugin is installed into still start? (issue 15)

    python -m q2_barcodemamba.install_check

prints every problem found and exits 1 if there is one. Four checks:

1. What the installed framework needs of ``click`` and ``setuptools``, read
   from its own source (:func:`framework_needs`): q2cli subclasses
   ``click.Option`` in ``q2cli/click/option.py`` and breaks on click 8.2
   (``make_metavar()`` called without the ``ctx`` that click 8.2 requires)
   and on click 8.5 (``is_bool_flag`` became a read-only property); qiime2's
   plugin manager imports ``pkg_resources``, which setuptools 81 removed.
2. Whether the requirements pip sees (this plugin's Requires-Dist and those
   of the installed distributions it pulls in: tokenizers ->
   huggingface-hub -> click, torch -> setuptools, ...) bound each of these
   packages inside what the framework needs (:func:`check`). A package left
   unbounded fails too: the next dependency release that asks for it
   (huggingface-hub 2.x asks for click>=8.4.2) would get pip's newest.
3. Whether the installed click and setuptools are inside those needs
   (:func:`installed_check`).
4. Where qiime2 loads plugins with ``pkg_resources``, whether the installed
   versions satisfy the plugin's whole requirement tree, as pkg_resources
   checks at load time (:func:`load_check`; a conflict there stops every
   ``qiime`` command, e.g. torch 2.13's ``setuptools>=77.0.3`` against
   QIIME 2 2024.10's setuptools 75.1).
"""
import importlib.metadata as metadata
import re
import sys
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

DIST = "q2-barcodemamba"

# (pattern in q2cli/click/option.py, the click versions it needs, why)
Q2CLI_CLICK_RULES = (
    (r"\.make_metavar\(\s*\)", "<8.2",
     "click 8.2 made Parameter.make_metavar() require a ctx argument; "
     "q2cli's GeneratedOption.get_help_record calls it without one "
     "(TypeError: make_metavar() missing 1 required positional argument: "
     "'ctx', in the help of every action with a boolean parameter)"),
    (r"self\.is_bool_flag\s*=", "<8.5",
     "click 8.5 made Option.is_bool_flag a read-only property; q2cli's "
     "GeneratedOption assigns it (AttributeError: property 'is_bool_flag' "
     "of 'GeneratedOption' object has no setter, for every plugin command)"),
    # a q2cli adapted to click 8.2 (none known yet) needs click 8.2 or newer
    (r"\.make_metavar\(\s*ctx", ">=8.2",
     "q2cli passes ctx to Parameter.make_metavar(), which click < 8.2 does "
     "not take"),
)
# No q2cli source to read: the bound of every q2cli release checked
# (2022.11 and 2024.5 run here; see docs/install.md).
Q2CLI_UNREAD = ("<8.2", "q2cli's source (q2cli/click/option.py) could not "
                "be read; every q2cli release checked breaks on click 8.2")
PKG_RESOURCES_GONE = "81"


@dataclass(frozen=True)
class Need:
    """What the installed framework needs of one package."""
    package: str          # canonical distribution name
    allowed: SpecifierSet
    framework: str        # who needs it, e.g. "q2cli 2022.11.1"
    reason: str


def q2cli_click_need(source, version="?"):
    """The click versions that q2cli's ``click/option.py`` (its text, or
    None when unreadable) needs, or None when it needs nothing special."""
    if source is None:
        hits = [Q2CLI_UNREAD]
    else:
        hits = [(spec, why) for pattern, spec, why in Q2CLI_CLICK_RULES
                if re.search(pattern, source)]
    if not hits:
        return None
    # the tightest bound on each side, and why
    upper = [h for h in hits if h[0].startswith("<")]
    lower = [h for h in hits if h[0].startswith(">=")]
    kept = ([min(upper, key=lambda h: Version(h[0][1:]))] if upper else []) \
        + ([max(lower, key=lambda h: Version(h[0][2:]))] if lower else [])
    return Need("click", SpecifierSet(",".join(s for s, _ in kept)),
                f"q2cli {version}", "; ".join(why for _, why in kept))


def qiime2_setuptools_need(source, version="?"):
    """setuptools<81 when qiime2's ``sdk/plugin_manager.py`` (its text)
    imports pkg_resources, else None."""
    if source is None or not re.search(
            r"^\s*(import|from)\s+pkg_resources\b", source, re.MULTILINE):
        return None
    return Need("setuptools", SpecifierSet(f"<{PKG_RESOURCES_GONE}"),
                f"qiime2 {version}",
                f"qiime2 {version} loads plugins with pkg_resources, which "
                f"setuptools {PKG_RESOURCES_GONE} removed (ModuleNotFoundError:"
                f" No module named 'pkg_resources': no `qiime` command runs)")


def _installed_source(dist, path):
    """(text of a file of an installed distribution or None, version)."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None, None
    try:
        with open(d.locate_file(path), encoding="utf-8") as fh:
            return fh.read(), d.version
    except OSError:
        return None, d.version


def framework_needs():
    """The Needs of the installed q2cli and qiime2 (none when absent)."""
    needs = []
    source, version = _installed_source("q2cli", "q2cli/click/option.py")
    if version is not None:
        needs.append(q2cli_click_need(source, version))
    source, version = _installed_source("qiime2",
                                        "qiime2/sdk/plugin_manager.py")
    if version is not None:
        needs.append(qiime2_setuptools_need(source, version))
    return [n for n in needs if n is not None]


def _applies(req, extras):
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))


def requirement_graph(root=DIST):
    """{distribution: [its requirements, as strings]} for ``root`` and
    every installed distribution it requires, transitively (markers
    evaluated here, extras followed): what pip and pkg_resources see of the
    installed environment."""
    graph, todo = {}, [(canonicalize_name(root), frozenset())]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            lines = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in lines:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if _applies(req, extras):
                graph.setdefault(name, set()).add(str(req))
                todo.append((canonicalize_name(req.name),
                             frozenset(req.extras)))
        graph.setdefault(name, set())
    return {k: sorted(v) for k, v in graph.items()}


def _probes(specifiers):
    """Versions that land in every interval the specifiers' boundaries
    delimit: each boundary, just below and just above it, and beyond."""
    probes = {Version("0.1"), Version("99999")}
    for spec in specifiers:
        try:
            v = Version(spec.version.rstrip(".*"))
        except InvalidVersion:
            continue
        rel = tuple(v.release) + (0,) * (3 - len(v.release))
        probes |= {Version(".".join(map(str, r))) for r in (
            rel, rel + (1,), rel[:-1] + (rel[-1] + 1,),
            (rel[0], rel[1] + 1), (rel[0] + 1,))}
        for i in (2, 1, 0):  # just below: 8.2 -> 8.1.99999
            if rel[i] > 0:
                probes.add(Version(".".join(map(str, rel[:i] + (
                    rel[i] - 1, 99999)))))
                break
    return sorted(probes)


def _within(specifier, allowed):
    """Does every version that ``specifier`` admits lie in ``allowed``?"""
    return not any(specifier.contains(v) and not allowed.contains(v)
                   for v in _probes(list(specifier) + list(allowed)))


def check(graph, needs, root=DIST):
    """Problems (strings) with the requirements in ``graph`` (as
    :func:`requirement_graph` returns) against the ``needs``: a package the
    framework needs bounded that they leave unbounded, let pip take outside
    the bound, or constrain so that no version fits."""
    root = canonicalize_name(root)
    problems = []
    for need in needs:
        edges = [(canonicalize_name(dist), Requirement(r))
                 for dist, reqs in graph.items() for r in reqs
                 if canonicalize_name(Requirement(r).name) == need.package]
        combined, own = SpecifierSet(), SpecifierSet()
        for dist, req in edges:
            combined &= req.specifier
            if dist == root:
                own &= req.specifier
        asked = ", ".join(f"{dist} asks '{req.name}{req.specifier}'"
                          for dist, req in edges) or \
            f"nothing bounds {need.package}"
        wanted = f"'{need.package}{need.allowed}'"
        if not _within(own, need.allowed) or not any(
                dist == root for dist, _ in edges):
            fix = (f"Fix: declare {wanted} in setup.py's install_requires "
                   f"and recipe/meta.yaml's requirements/run.")
        else:
            others = sorted({d for d, _ in edges if d != root})
            fix = (f"Fix: pip install {root} {wanted}, so that pip picks "
                   f"versions of {', '.join(others)} that accept {wanted}.")
        probes = _probes(list(combined) + list(need.allowed))
        outside = [v for v in probes if combined.contains(v) and
                   not need.allowed.contains(v)]
        if not any(combined.contains(v) and need.allowed.contains(v)
                   for v in probes):
            problems.append(
                f"{need.package}: no version satisfies both {root}'s "
                f"requirements ({asked}) and {need.framework}'s {wanted}: "
                f"{need.reason}. {fix}")
        elif outside:
            problems.append(
                f"{need.package}: {root}'s requirements let pip install "
                f"{need.package} {outside[0]} ({asked}), but "
                f"{need.framework} needs {wanted}: {need.reason}. {fix}")
    return problems


def load_check(root=DIST):
    """Where qiime2 loads plugins with pkg_resources: the conflict that
    pkg_resources finds in the plugin's installed requirement tree (it
    refuses to load the plugin, and so every ``qiime`` command fails), or
    None. None too where qiime2 does not use pkg_resources."""
    if not any(n.package == "setuptools" for n in framework_needs()):
        return None
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pkg_resources
    except ImportError as err:
        return (f"qiime2 imports pkg_resources, which is missing ({err}): "
                f"pip install 'setuptools>=77.0.3,<80.9'")
    try:
        pkg_resources.working_set.require(root)
    except pkg_resources.ResolutionError as err:
        return (f"pkg_resources, which qiime2 loads plugins with, rejects the "
                f"installed requirements of {root}: {err!r}. Install versions "
                f"that satisfy them (docs/install.md, 'Into an existing "
                f"QIIME 2 environment').")
    return None


def installed_check(needs, versions=None):
    """Problems with the installed versions themselves (``versions``:
    {package: version}, by default what is installed)."""
    problems = []
    for need in needs:
        if versions is not None:
            version = versions.get(need.package)
        else:
            try:
                version = metadata.version(need.package)
            except metadata.PackageNotFoundError:
                version = None
        if version is not None and not need.allowed.contains(
                version, prereleases=True):
            problems.append(
                f"{need.package} {version} is installed, but "
                f"{need.framework} needs '{need.package}{need.allowed}': "
                f"{need.reason}. Fix: pip install "
                f"'{need.package}{need.allowed}'.")
    return problems


def problems(root=DIST):
    needs = framework_needs()
    found = check(requirement_graph(root), needs, root)
    found += installed_check(needs)
    conflict = load_check(root)
    return found + ([conflict] if conflict else [])


def main():
    found = problems()
    for p in found:
        print(f"PROBLEM: {p}\n")
    needs = framework_needs()
    print(f"{len(found)} problem(s); framework needs: " + (", ".join(
        f"{n.package}{n.allowed} ({n.framework})" for n in needs) or "none"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
