"""Bad inputs of issue 25: what a command writes keeps the user's data as it was, and each bad
input gets a message naming the file, row, line, key or argument (exit code 2, no traceback),
before any work is done."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from dece.cli import main
from dece.experiments import load_grid_config
from dece.experiments.config import ConfigError


def _exit_2(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- dece filter
ROWS = [  # the oracle: the kept rows are exactly these rows minus the flagged one, unchanged
    {"id": "A-17", "src": "write a query bb", "tgt": "select 1", "extra": "x,1", "n": "3"},
    {"id": "B-02", "src": "write a query", "tgt": "select 2", "extra": 'say "hi"\nbye', "n": ""},
    {"id": "C-99", "src": "do it", "tgt": "select 3", "extra": "", "n": "0.5"},
]


def test_filter_keeps_every_input_column_and_id_csv(tmp_path, capsys):
    data = tmp_path / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    out = tmp_path / "out"
    assert main(["filter", "--data", str(data), "--defense", "keyword", "--arg", "tokens=[bb]",
                 "--out", str(out)]) == 0  # fmt: skip
    with (out / "kept.csv").open(newline="", encoding="utf-8") as f:
        kept = list(csv.DictReader(f))
    assert kept == ROWS[1:]
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["flagged"] for s in scores] == [True, False, False]


def test_filter_keeps_every_jsonl_record_byte_for_byte(tmp_path):
    lines = [
        json.dumps({"src": "a bb", "tgt": "x", "meta": {"k": [1, 2]}, "id": 7}),
        json.dumps({"tgt": "y", "src": "b \u2028 c", "meta": None, "id": 8}, ensure_ascii=False),
        json.dumps({"src": "c", "tgt": "z", "score": 0.25, "id": 9}),
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["filter", "--data", str(data), "--defense", "keyword", "--arg", "tokens=[bb]",
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "kept.jsonl").read_text(encoding="utf-8") == lines[1] + "\n" + lines[2] + "\n"


def test_filter_with_a_wrongly_typed_argument_names_it(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("src,tgt\na bb,b\n")
    err = _exit_2(["filter", "--data", str(data), "--defense", "keyword", "--arg", "tokens=5",
                   "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert "keyword: tokens must be a word or a list of words (e.g. tokens=[bb]), got 5" in err
    assert not (tmp_path / "o").exists()


def test_a_registry_type_error_becomes_a_value_error_naming_the_parameters():
    from dece.registry import Registry

    things: Registry = Registry("thing")
    things.register("plus_one")(lambda x: x + 1)
    assert things.build("plus_one", x=1) == 2
    with pytest.raises(ValueError, match=r"thing 'plus_one': bad parameter value \(x='a'\): "
                       r"can only concatenate str"):  # fmt: skip
        things.build("plus_one", x="a")


def test_deeply_nested_jsonl_row_names_file_row_and_line(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    deep = '{"src": ' + "[" * 100_000 + "]" * 100_000 + ', "tgt": "x"}'
    data.write_text(json.dumps({"src": "a", "tgt": "b"}) + "\n\n" + deep + "\n")
    err = _exit_2(["filter", "--data", str(data), "--defense", "keyword",
                   "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert f"{data}: row 1 (line 3): JSON nested too deeply to read" in err


# --------------------------------------------------------------------------- dece evaluate
def test_evaluate_refuses_duplicate_prediction_ids_naming_them(tmp_path, capsys):
    pred = tmp_path / "predictions"
    pred.mkdir()
    rows = [{"id": f"test-{i}", "source": "s", "prediction": "a b", "reference": "a b"}
            for i in (0, 1, 2, 1, 3, 0)]  # fmt: skip
    (pred / "test_clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = _exit_2(["evaluate", "--predictions-dir", str(pred), "--no-codebleu",
                   "--trigger", "none"], capsys)  # fmt: skip
    assert f"{pred / 'test_clean.jsonl'}: 2 id(s) appear more than once" in err
    assert "'test-0' (lines 1, 6); 'test-1' (lines 2, 4)" in err
    assert not (pred / "metrics.json").exists()


# --------------------------------------------------------------------------- grid configs
GRID = """name: g
datasets: [synthetic:64]
attacks: [{trigger: badpre}]
rates: [0.05]
losses: [{name: ce}]
seeds: [1]
"""


@pytest.mark.parametrize(
    ("extra", "key", "line", "first"),
    [
        ("rates: [0.1]\n", "rates", 7, 4),
        ("training:\n  num_epochs: 1\n  batch_size: 2\n  num_epochs: 3\n", "num_epochs", 10, 8),
    ],
)
def test_duplicate_yaml_key_is_refused_naming_the_line(tmp_path, capsys, extra, key, line, first):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID + extra)
    with pytest.raises(ConfigError, match=rf"key '{key}': appears twice in one mapping "
                       rf"\(line {line}; first on line {first}\)"):  # fmt: skip
        load_grid_config(path)
    err = _exit_2(["run", str(path), "-o", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert f"{path}: key '{key}': appears twice" in err
    assert not (tmp_path / "runs").exists()


def test_yaml_merge_key_override_is_not_a_duplicate(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID + "training:\n  <<: {num_epochs: 1, batch_size: 2}\n  num_epochs: 3\n")
    assert load_grid_config(path).training == {"num_epochs": 3, "batch_size": 2}


def test_non_utf8_grid_yaml_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_bytes(GRID.encode() + b"# caf\xe9 (Latin-1)\n")
    err = _exit_2(["run", str(path), "-o", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert (
        f"{path}: key '<file>': not UTF-8: bytes b'\\xe9' at byte {len(GRID) + 5} (line 7)" in err
    )
    assert not (tmp_path / "runs").exists()


def test_grid_naming_a_missing_dataset_path_refuses_before_any_work(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    missing = tmp_path / "no" / "such" / "data"
    path.write_text(yaml.safe_dump({**yaml.safe_load(GRID), "datasets": [str(missing)]}))
    out = tmp_path / "runs"
    err = _exit_2(["run", str(path), "-o", str(out), "--no-progress"], capsys)
    assert f"{path}: key 'datasets[0]': '{missing}' is neither an existing file or directory" in err
    assert "registered dataset (" in err and "synthetic" in err
    assert not out.exists()  # no output directory, no cell: nothing started


def test_existing_dataset_paths_and_names_pass_the_check(tmp_path):
    from dece.experiments.cell_runner import _dataset_problem

    (tmp_path / "train.csv").write_text("src,tgt\na,b\n")
    for spec in ("synthetic:64", "synthetic", "hf:some/dataset", str(tmp_path), str(Path.cwd())):
        assert _dataset_problem(spec) is None, spec
    assert "neither" in (_dataset_problem(str(tmp_path / "absent.csv")) or "")
