"""`npflows gradcheck --module` and `npflows check-flow` on a user's own modules and flows
(tests/fixtures/user_modules.py), and the one registry convention behind every NAME."""

import json

import pytest
from cli_errors import assert_usage_error, run_cli

from npflows.errors import ConfigError
from npflows.registry import Table
from npflows.testing.gradients import as_case
from runners import registry, reproduce

USER = "tests.fixtures.user_modules:"


def test_gradcheck_module_passes_a_right_backward_and_names_a_transposed_one():
    code, out, _ = run_cli(["gradcheck", "--module", USER + "dense", "--case", "Dense"])
    assert code == 0 and out.count("  pass\n") == 2, out
    code, out, _ = run_cli(["gradcheck", "--module", USER + "transposed_dense", "--json"])
    (report,) = json.loads(out)
    assert code == 1 and report["module"] == USER + "transposed_dense" and not report["passed"]
    weight = {tensor["name"]: tensor for tensor in report["tensors"]}["weight"]
    assert weight["max_rel_error"] > 0.1 and len(weight["worst_entry"]) == 2
    code, out, _ = run_cli(["gradcheck", "--module", USER + "transposed_dense"])
    assert code == 1 and "the backward of 'weight' is wrong" in out


def test_check_flow_passes_a_library_model_and_names_a_wrong_inverse():
    code, out, _ = run_cli(["check-flow", USER + "bipartite_model", "--json"])
    rows = {row["check"]: row["result"] for row in json.loads(out)}
    assert code == 0 and rows == {
        "bijection": "pass",
        "causal": "skipped",
        "normalized": "pass",
        "gradients": "pass",
    }
    code, out, _ = run_cli(["check-flow", USER + "add_previous_wrong_inverse"])
    assert code == 1 and "bijection    FAIL     assert_bijection: FlowModel (K=5, length=3)" in out
    assert "sequence [1, 0, 0] came back as [1, 0, 4]" in out
    assert "gradients    FAIL     NotImplementedError: AddPrevious.backward" in out  # untrainable


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["check-flow", USER + "nothing"], "module 'tests.fixtures.user_modules' has no attribute"),
        (["check-flow", "no_such_package.flows:build"], "no module 'no_such_package.flows'"),
        (["gradcheck", "--module", "no_colon"], "expected package.module:attribute, got"),
        (["reproduce", "table9"], "reproduce: unknown reproduction 'table9'; expected one of ["),
    ],
)
def test_a_bad_name_is_one_error_line(argv, fragment):
    assert_usage_error(run_cli(argv), fragment)


def test_the_three_registries_are_tables_with_one_lookup():
    from npflows import gradcheck

    for table in (gradcheck.CASES, registry.EXPERIMENTS, reproduce.REPRODUCTIONS):
        assert isinstance(table, Table) and table.names() == sorted(table)
    assert reproduce.resolve("table1").__module__ == "runners.fullrank_reproduce"
    assert reproduce.resolve("figure2").__module__ == "runners.mog_reproduce"
    assert reproduce.resolve(USER + "dense").__name__ == "dense"  # a user's, by path
    assert gradcheck.CASES.resolve(USER + "dense").__name__ == "dense"
    with pytest.raises(ConfigError, match="registry: unknown experiment 'nope'"):
        registry.resolve("nope")
    with pytest.raises(KeyError):
        gradcheck.CASES["nope"]  # the Mapping protocol, for enumerating code


def test_register_adds_a_case_that_npflows_gradcheck_runs(monkeypatch, capsys):
    """The run-time way in for a case outside the table (a session's own, a user's)."""
    from npflows import gradcheck
    from tests.fixtures.user_modules import dense

    monkeypatch.setattr(gradcheck.CASES, "_entries", dict(gradcheck.CASES._entries))
    gradcheck.register("SquareLinear(registered)")(lambda rng: as_case(dense(rng)))
    with pytest.raises(ValueError, match="'SquareLinear\\(registered\\)' is already in the table"):
        gradcheck.register("SquareLinear(registered)")(dense)
    assert run_cli(["gradcheck", "--case", "SquareLinear(registered)"])[0] == 0
    assert "SquareLinear(registered)" in run_cli(["gradcheck", "--list"])[1].split("\n")
