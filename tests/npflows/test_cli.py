import json

from runners import cli


def test_gradcheck_json_lists_every_case_as_passed(capsys):
    code = cli.main(["gradcheck", "--json", "--case", "Dense", "--case", "Embedding"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [row["module"] for row in rows] == ["Dense", "Embedding"]
    assert all(row["passed"] and row["max_rel_error"] < 1e-6 for row in rows)


def test_gradcheck_table_has_a_row_per_case(capsys):
    assert cli.main(["gradcheck", "--case", "GELU"]) == 0
    out = capsys.readouterr().out
    assert "GELU" in out and "1 passed, 0 failed" in out
