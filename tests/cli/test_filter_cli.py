"""`dece filter` end to end on a tiny model: a user's dataset (no manifest) is scored, every row
gets a score and a decision in input order, and the kept rows are written with the input's
columns; model-reading filters use a `dece train` run on the same data."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import save_tiny_seq2seq  # noqa: E402

from dece.attacks import poison_dataset  # noqa: E402
from dece.cli import main  # noqa: E402
from dece.data import load_dataset, save_examples  # noqa: E402

TRAIN = [
    "num_epochs=2", "batch_size=8", "learning_rate=0.001", "max_source_length=64",
    "max_target_length=64", "eval_max_examples=2", "test_max_examples=2",
    "generation_max_new_tokens=4", "codebleu=false", "use_cpu=true", "save_checkpoints=false",
    "eval_each_epoch=false", "loss=ce", "record_example_losses=true",
]  # fmt: skip


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> tuple[Path, list[str]]:
    """A dataset directory whose train split carries BadPre in 4 of 40 rows (unknown to the
    filter: no manifest is written)."""
    root = tmp_path_factory.mktemp("user_data")
    splits = load_dataset("synthetic:40")
    result = poison_dataset(splits["train"], "badpre", "sql_injection", rate=0.1, seed=2)
    save_examples(result.examples, root / "train.csv")
    save_examples(splits["valid"], root / "valid.csv")
    save_examples(splits["test"], root / "test.csv")
    return root, list(result.manifest.poisoned_ids)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, user_data) -> Path:
    model = save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))
    run = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", f"output_dir={run}", f"data={user_data[0]}", f"model={model}",
                 *TRAIN, "--no-progress"]) == 0  # fmt: skip
    return run


def _outputs(out: Path) -> tuple[list[dict], list, dict]:
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    return scores, _csv_rows(out / "kept.csv"), json.loads((out / "filter.json").read_text())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_model_free_filter(tmp_path, user_data, capsys):
    data, poisoned = user_data
    out = tmp_path / "kw"
    assert main(["filter", "--data", str(data), "--defense", "keyword",
                 "--arg", "tokens=[bb]", "--out", str(out)]) == 0  # fmt: skip
    scores, kept, summary = _outputs(out)
    rows = load_dataset(str(data))["train"]
    assert [s["id"] for s in scores] == [ex.id for ex in rows]  # every row, input order
    flagged = {s["id"] for s in scores if s["flagged"]}
    raw = _csv_rows(data / "train.csv")  # kept: the input's own rows, every column, unchanged
    assert kept == [r for r, s in zip(raw, scores, strict=True) if not s["flagged"]]
    assert summary["n_flagged"] == len(flagged) and summary["defense"]["tokens"] == ["bb"]
    assert flagged == set(poisoned)
    assert "flagged 4 of 40 rows" in capsys.readouterr().out

    out = tmp_path / "nat"  # the naturalness filter ranks the trigger word first
    assert main(["filter", "--data", str(data), "--defense", "naturalness", "--out",
                 str(out)]) == 0  # fmt: skip
    scores, _, summary = _outputs(out)
    assert next(iter(summary["info"]["top_tokens"])) == "bb"
    assert summary["info"]["cost"]["model_passes"] == 0.0 and len(scores) == 40


@pytest.mark.parametrize("defense", ["spectral", "dynamics"])
def test_model_reading_filters(tmp_path, user_data, trained_run, defense):
    data, _ = user_data
    out = tmp_path / defense
    assert main(["filter", "--data", str(data), "--defense", defense, "--model",
                 str(trained_run), "--out", str(out)]) == 0  # fmt: skip
    scores, kept, summary = _outputs(out)
    assert len(scores) == 40 and len(kept) == 40 - summary["n_flagged"]
    assert summary["n_flagged"] == 3  # ceil(1.5 x 5% x 40)
    if defense == "dynamics":
        assert summary["info"]["losses"] == str(trained_run / "example_losses.jsonl")
        assert summary["info"]["cost"]["model_passes"] == 0.0
    else:
        assert summary["info"]["cost"]["model_passes"] == 1.0


def test_errors_name_the_missing_option(tmp_path, user_data, capsys):
    data, _ = user_data
    with pytest.raises(SystemExit) as exc:
        main(["filter", "--data", str(data), "--defense", "spectral", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["filter", "--data", str(data), "--out", str(tmp_path)])
    assert "--defense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["filter", "--data", str(data), "--defense", "naturalness", "--arg", "order",
              "--out", str(tmp_path)])  # fmt: skip
    assert "KEY=VALUE" in capsys.readouterr().err
