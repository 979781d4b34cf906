"""``mmsctl bench NAME``: every measuring scenario is a subcommand from one table, with its help and example,
one-line errors, and no module of its own to run with ``python -m``. Nothing here measures or starts a server."""
import ast
import importlib.util
import inspect
import shlex

import pytest

from mmsctl import cli
from mmsctl.cli import bench as bench_cli

pytestmark = pytest.mark.unit

SCENARIOS = sorted(bench_cli.SCENARIOS)


def test_the_table_names_every_scenario_once():
    assert len(SCENARIOS) >= 7
    assert {"compare", "request-costs", "two-models", "profiles", "onnx-latency", "servers",
            "exporter-overhead"} <= set(SCENARIOS)
    modules = list(bench_cli.SCENARIOS.values())
    assert len({module.__name__ for module in modules}) == len(modules)


@pytest.mark.parametrize("name", SCENARIOS)
def test_help_works_and_ends_with_the_example(name, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["bench", name, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    module = bench_cli.SCENARIOS[name]
    assert text.startswith("usage: mmsctl bench %s" % name)
    assert text.rstrip().endswith(module.EXAMPLE.strip().splitlines()[-1])
    assert "python -m" not in text


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_example_parses_and_runs_the_scenario(name):
    module = bench_cli.SCENARIOS[name]
    lines = module.EXAMPLE.strip().splitlines()
    assert lines and "\n" not in module.HELP
    parser = cli.build_parser()
    for line in lines:
        words = shlex.split(line)
        assert words[:3] == ["mmsctl", "bench", name], line
        args = parser.parse_args(words[1:])
        assert args.func is module.main


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_module_has_no_main_block_and_one_entry(name):
    module = bench_cli.SCENARIOS[name]
    tree = ast.parse(inspect.getsource(module))
    main_blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "__main__" in ast.unparse(node.test)]
    assert main_blocks == []
    assert list(inspect.signature(module.main).parameters) == ["args"]
    assert "python -m" not in inspect.getsource(module)


@pytest.mark.parametrize("old", ["mmsctl.bench_compare", "mmsctl.onnx_latency", "mmsctl.prove_profiles",
                                 "mmsctl.request_costs", "mmsctl.two_models", "mmsctl.compare_servers"])
def test_the_old_script_names_are_gone(old):
    assert importlib.util.find_spec(old) is None


@pytest.mark.parametrize("argv, message", [
    (["bench", "request-costs", "--requests", "0", "--no-servers"], "--requests and --chunk must be at least 1"),
    (["bench", "profiles", "--profiles", "gpu"], "only the CPU profiles are compared here, not gpu"),
    (["bench", "profiles", "--env", "NOEQUALS"], "expected KEY=VALUE, got 'NOEQUALS'"),
    (["bench", "onnx-latency", "--requests", "0"], "--requests must be at least 1"),
    (["bench", "exporter-overhead", "--archive", "/nonexistent/x.mar"], "--archive /nonexistent/x.mar is not a file"),
    (["bench", "two-models", "--image", "/nonexistent/cat.png"], "cannot read the request body /nonexistent/cat.png"),
    (["bench", "servers", "--image", "/nonexistent/cat.png"], "cannot read the request body /nonexistent/cat.png"),
])
def test_bad_input_is_one_line_before_anything_runs(argv, message, capsys):
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("mmsctl: error: " + message)
    assert len(err.strip().splitlines()) == 1
