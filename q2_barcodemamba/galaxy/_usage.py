"""Galaxy <tests> from the plugin's usage examples: a Usage driver that
records every ``use.action`` call without running it, and the test-data
files (the examples' inputs) that ``--test-data`` writes."""
import os

from qiime2.sdk.usage import Usage, UsageVariable

_EXT = {"artifact": "qza", "visualization": "qzv", "metadata": "tsv",
        "column": "tsv"}


class _RecordedVariable(UsageVariable):
    """A usage variable that remembers the assertions made on it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.assertions = []
        self.column = None

    def assert_output_type(self, semantic_type):
        self.assertions.append(("type", str(semantic_type)))

    def assert_has_line_matching(self, path, expression):
        self.assertions.append(("line", path, expression))


class _TestRecorder(Usage):
    """Usage driver that records each ``use.action`` call; runs nothing."""

    def __init__(self):
        super().__init__()
        self.calls = []  # (action id, {name: value}, {output: variable})

    def usage_variable(self, name, factory, var_type):
        return _RecordedVariable(name, factory, var_type, self)

    def get_metadata_column(self, name, column_name, variable):
        var = super().get_metadata_column(name, column_name, variable)
        var.column = column_name
        return var

    def action(self, action, inputs, outputs):
        results = super().action(action, inputs, outputs)
        self.calls.append((action.action_id, dict(inputs.items()),
                           dict(zip(outputs.keys(), results))))
        return results


def recorded_tests(plugin) -> dict:
    """{action id: [(example name, inputs, outputs), ...]}: the calls of an
    action in its own usage examples (else in other actions' examples)."""
    own, other = {}, {}
    for action in sorted(plugin.actions.values(), key=lambda a: a.id):
        for example_name, example in sorted(action.examples.items()):
            use = _TestRecorder()
            example(use)
            for action_id, inputs, outputs in use.calls:
                calls = own if action_id == action.id else other
                calls.setdefault(action_id, []).append(
                    (example_name, inputs, outputs))
    return {action_id: own.get(action_id) or other.get(action_id, [])
            for action_id in plugin.actions}


def test_data_name(example_name: str, var) -> str:
    return f"{example_name}.{var.name}.{_EXT[var.var_type]}"


def _variables(value) -> list:
    """The usage variables in an action argument (one, a list, or none)."""
    if isinstance(value, UsageVariable):
        return [value]
    if isinstance(value, (list, tuple, set)) and value and all(
            isinstance(v, UsageVariable) for v in value):
        return list(value)
    return []


def write_test_data(plugin, test_data_dir: str) -> list:
    """Run the example factories and save every test input not yet there."""
    os.makedirs(test_data_dir, exist_ok=True)
    written = []
    for cases in recorded_tests(plugin).values():
        for example_name, inputs, _ in cases:
            for value in (v for arg in inputs.values()
                          for v in _variables(arg)):
                path = os.path.join(test_data_dir,
                                    test_data_name(example_name, value))
                if not os.path.exists(path):
                    value.execute().save(path)
                    written.append(path)
    return written
