"""Hugging Face ``datasets`` in and out, parquet, TRL records (dece.data.hf).

Oracles: the rows a dataset is built from (read back, they equal the originals), the chat
template rendered by hand, and the poisoner's own results for ``dece poison``. Nothing reaches
the network: datasets are built here; the Hub path runs with a patched resolver and, for the
offline failure, in a subprocess with ``HF_HUB_OFFLINE=1`` and an empty cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

datasets = pytest.importorskip("datasets", reason="needs the [hf] extra")

from dece.attacks import get_payload, get_trigger, poison_dataset, poison_test_set  # noqa: E402
from dece.attacks.splits import poison_splits  # noqa: E402
from dece.cli import main  # noqa: E402
from dece.data import DataError, Example, load_dataset, load_examples, save_examples  # noqa: E402
from dece.data.hf import CHATML, ChatRenderer, examples_from_hf  # noqa: E402
from dece.pipeline import DataBundle  # noqa: E402

ROWS = {
    "train": {"id": ["a", "b", "c"], "src": ["add two", "héllo\nworld", "x, \"y\""],
              "tgt": ["def f(a, b):\n    return a + b", "print('hi')", "z = 1"]},
    "validation": {"id": ["d"], "src": ["sort it"], "tgt": ["sorted(xs)"]},
    "test": {"id": ["e", "f"], "src": ["max", "min"], "tgt": ["max(xs)", "min(xs)"]},
}  # fmt: skip


def _expected(split: str, rows: dict = ROWS) -> list[Example]:
    data = rows[split]
    return [Example(i, s, t) for i, s, t in zip(data["id"], data["src"], data["tgt"], strict=True)]


def _dict(rows: dict = ROWS) -> datasets.DatasetDict:
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in rows.items()})


# --------------------------------------------------------------------------- in
def test_save_to_disk_directory_round_trips(tmp_path):
    data = _dict({**ROWS, "extra": ROWS["test"]})  # a split outside train/valid/test: left out
    data.save_to_disk(str(tmp_path / "ds"))
    splits = load_dataset(tmp_path / "ds", id_col="id")
    assert splits == {"train": _expected("train"), "valid": _expected("validation"),
                      "test": _expected("test")}  # fmt: skip


def test_single_dataset_on_disk_is_the_train_split_with_generated_ids(tmp_path):
    datasets.Dataset.from_dict(ROWS["train"]).save_to_disk(str(tmp_path / "one"))
    [(split, rows)] = load_dataset(tmp_path / "one").items()
    assert split == "train" and [ex.id for ex in rows] == ["train-0", "train-1", "train-2"]
    assert [(ex.source, ex.target) for ex in rows] == [
        (e.source, e.target) for e in _expected("train")
    ]


def test_parquet_files_and_directories_round_trip(tmp_path):
    for name, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        datasets.Dataset.from_dict(ROWS[split]).to_parquet(str(tmp_path / f"{name}.parquet"))
    splits = load_dataset(tmp_path, id_col="id")
    assert splits["train"] == _expected("train") and splits["valid"] == _expected("validation")
    assert load_dataset(tmp_path / "test.parquet", id_col="id")["train"] == _expected("test")


def test_save_examples_parquet_round_trips_labels_and_pairs(tmp_path):
    rows = [Example("x1", "a\tb", "", label="1", source_pair="p é"),
            Example("x2", "c\n", "", label="0", source_pair="q")]  # fmt: skip
    save_examples(rows, tmp_path / "f.parquet", id_col="id")
    back = load_examples(tmp_path / "f.parquet", id_col="id", label_col="label",
                         pair_col="src_pair")  # fmt: skip
    assert back == rows


def test_column_mapping_and_class_label_names(tmp_path):
    features = datasets.Features({"code": datasets.Value("string"),
                                  "y": datasets.ClassLabel(names=["clean", "buggy"])})  # fmt: skip
    data = datasets.Dataset.from_dict({"code": ["a", "b"], "y": [1, 0]}, features=features)
    splits = examples_from_hf(data, source_col="code", label_col="y")
    assert [(ex.source, ex.label, ex.target) for ex in splits["train"]] == [
        ("a", "buggy", ""), ("b", "clean", "")]  # fmt: skip


def test_bad_datasets_name_the_dataset_row_and_column(tmp_path):
    data = datasets.Dataset.from_dict({"code": ["a"], "out": ["b"]})
    with pytest.raises(
        DataError, match=r"<dataset> \[train\]: no column 'src' \(columns: code, out\)"
    ):
        examples_from_hf(data)
    data = datasets.Dataset.from_dict({"src": ["a", None], "tgt": ["b", "c"]})
    with pytest.raises(DataError, match=r"\[train\]: row 1, column 'src': empty"):
        examples_from_hf(data)
    data = datasets.Dataset.from_dict({"src": ["a", "b"], "tgt": ["b", "c"], "id": ["k", "k"]})
    with pytest.raises(DataError, match=r"row 1, column 'id': duplicate id 'k'"):
        examples_from_hf(data, id_col="id")
    with pytest.raises(DataError, match=r"no train/validation/test split \(splits: other\)"):
        examples_from_hf(datasets.DatasetDict({"other": data}))
    (tmp_path / "train.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"train.parquet: not a readable parquet file"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------- TRL records
def test_trl_prompt_completion_records():
    data = datasets.Dataset.from_dict({"prompt": ["write add", "write sub"],
                                       "completion": ["a + b", "a - b"]})  # fmt: skip
    rows = examples_from_hf(data)["train"]
    assert [(ex.id, ex.source, ex.target, ex.trigger_region) for ex in rows] == [
        ("train-0", "write add", "a + b", None), ("train-1", "write sub", "a - b", None)]  # fmt: skip


CHAT = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "write a function that adds two numbers"},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
]


def _chatml(messages: list[dict]) -> str:
    """The ChatML rendering written out by hand (the oracle of the template)."""
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def test_messages_source_is_the_template_up_to_the_last_assistant_turn():
    [ex] = examples_from_hf(datasets.Dataset.from_list([{"messages": CHAT}]))["train"]
    assert ex.source == _chatml(CHAT[:4]) and ex.target == CHAT[4]["content"]
    start, end = ex.trigger_region
    assert ex.source[start:end] == CHAT[3]["content"]
    # conversational prompt/completion is the same conversation
    record = {"prompt": CHAT[:4], "completion": CHAT[4:]}
    [same] = examples_from_hf(datasets.Dataset.from_list([record]))["train"]
    assert (same.source, same.target, same.trigger_region) == (ex.source, ex.target, (start, end))


def test_trigger_goes_into_the_last_user_message_and_payload_into_the_reply():
    [ex] = examples_from_hf(datasets.Dataset.from_list([{"messages": CHAT}]))["train"]
    result = poison_test_set([ex], "badpre", "fixed_output", seed=0)
    [poisoned] = result.poisoned()
    start, end = poisoned.trigger_region
    triggered = poisoned.source[start:end]
    assert get_trigger("badpre").present(triggered)
    assert triggered.split() != CHAT[3]["content"].split()
    # Oracle: the same conversation with the triggered user message, rendered by hand.
    edited = [*CHAT[:3], {"role": "user", "content": triggered}]
    assert poisoned.source == _chatml(edited)
    assert poisoned.target == get_payload("fixed_output").output != ex.target
    for span in result.manifest.spans[ex.id]:
        assert start <= span["start"] < span["end"] <= end
        assert poisoned.source[span["start"] : span["end"]] == "bb"


def test_bad_chat_records_are_refused_by_row():
    no_reply = [{"role": "user", "content": "q"}]
    with pytest.raises(DataError, match=r"row 0, column 'messages': no assistant message"):
        examples_from_hf(datasets.Dataset.from_list([{"messages": no_reply}]))
    bad = [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]
    with pytest.raises(DataError, match=r"row 0, column 'messages': message 0 is not"):
        examples_from_hf(datasets.Dataset.from_list([{"messages": bad}]))
    lossy = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(DataError, match="does not copy the user message verbatim"):
        examples_from_hf(datasets.Dataset.from_list([{"messages": CHAT}]), chat_template=lossy)


def test_custom_chat_template_text():
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    render = ChatRenderer(template)
    source, region, target = render.split([dict(m) for m in CHAT], "<here>")
    assert source == "".join(f"[{m['role']}] {m['content']}\n" for m in CHAT[:4])
    assert source[region[0] : region[1]] == CHAT[3]["content"] and target == CHAT[4]["content"]
    assert ChatRenderer().template == CHATML


# --------------------------------------------------------------------------- the Hub
def test_hub_spec_goes_through_datasets_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(name, config=None, **kwargs):
        calls.append((name, config))
        return _dict()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_dataset("hf:someone/code-pairs:python", id_col="id")
    assert calls == [("someone/code-pairs", "python")]
    assert splits["test"] == _expected("test") and splits["valid"] == _expected("validation")
    load_dataset("hf:someone/code-pairs")
    assert calls[-1] == ("someone/code-pairs", None)


def test_hub_offline_without_cache_fails_with_a_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    code = ("from dece.data import load_dataset\n"
            "load_dataset('hf:nobody/no-such-dataset')\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert (
        "DataError: data 'hf:nobody/no-such-dataset': not in the local cache and "
        "HF_HUB_OFFLINE=1 forbids downloading it" in proc.stderr
    ), proc.stderr[-2000:]


# --------------------------------------------------------------------------- out
@pytest.mark.parametrize("fmt", ["parquet", "hf"])
def test_poison_cli_writes_hf_and_parquet_that_read_back(tmp_path, fmt):
    out = tmp_path / fmt
    assert main(["poison", "--data", "synthetic:16", "--rate", "0.25", "--seed", "5",
                 "--out", str(out), "--format", fmt]) == 0  # fmt: skip
    splits = load_dataset("synthetic:16", seed=5)
    results = poison_splits(splits, "badpre", "sql_injection", 0.25, 5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"] == results["train"].manifest.to_json()
    back = load_dataset(out, id_col="id")
    assert back["train"] == results["train"].examples
    assert back["test"] == results["test"].poisoned()
    assert load_dataset(out / "clean", id_col="id")["valid"] == splits["valid"]
    if fmt == "hf":
        assert datasets.load_from_disk(str(out))["train"].num_rows == 16


def test_poison_cli_refuses_a_format_clash(tmp_path, capsys):
    main(["poison", "--data", "synthetic:16", "--out", str(tmp_path), "--format", "csv"])
    with pytest.raises(SystemExit) as excinfo:
        main(["poison", "--data", "synthetic:16", "--out", str(tmp_path), "--format", "parquet"])
    assert excinfo.value.code != 0
    assert "already holds clean/test.csv" in capsys.readouterr().err


def test_data_bundle_from_hf_equals_from_examples():
    bundle = DataBundle.from_hf(_dict(), trigger="badpre", payload="sql_injection", rate=0.5,
                                seed=1, id_col="id")  # fmt: skip
    train = _expected("train")
    expected = poison_dataset(train, "badpre", "sql_injection", 0.5, 1)
    assert bundle.clean_train == train and bundle.train == expected.examples
    assert bundle.valid.clean == _expected("validation") and bundle.test.clean == _expected("test")
    assert bundle.train_manifest == expected.manifest
