"""Properties of the package's own source: short functions in the core."""
import ast
import os

import q2_barcodemamba

CORE = os.path.join(os.path.dirname(q2_barcodemamba.__file__), "core")
MAX_LINES = 80


def test_core_functions_are_short():
    """Every function of q2_barcodemamba/core fits on a screen (at most
    80 lines, decorators excluded, docstring included)."""
    long = []
    for name in sorted(os.listdir(CORE)):
        if not name.endswith(".py"):
            continue
        path = os.path.join(CORE, name)
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"core/{name}:{node.lineno} {node.name} "
                                f"({n} lines)")
    assert not long, long
    assert len(os.listdir(CORE)) > 10      # the core was found
