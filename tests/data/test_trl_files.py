"""TRL records (``prompt`` / ``completion``, ``messages``) in plain JSONL and CSV files load as the
same examples as the same records in a ``datasets`` dataset (dece.data.trl_records, one
conversion for both readers).

Oracles: the ``datasets`` path on the same records, built here two ways (``Dataset.from_list``
and ``datasets``' own JSON / CSV reader on the very file), the last user message found in the
source at the trigger region, and ``dece poison`` writing the same files from a JSONL directory
as from the same records saved with ``save_to_disk``. Bad records are refused naming the file
and row, with the message the ``datasets`` path gives. Nothing reaches the network.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets", reason="needs the [hf] extra")

from test_hf import CHAT  # noqa: E402  (the same conversation as the datasets-path tests)

from dece.cli import main  # noqa: E402
from dece.data import DataError, Example, load_dataset, load_examples  # noqa: E402
from dece.data.hf import examples_from_hf  # noqa: E402

SHORT = [
    {"role": "user", "content": 'sort "xs", é'},
    {"role": "assistant", "content": "sorted(xs)"},
]

RECORDS = {
    "prompt_completion": [
        {"prompt": "write add", "completion": "a + b"},
        {"prompt": "héllo\nworld, \"q\"", "completion": "print('hi')\n"},
    ],
    "messages": [{"messages": CHAT}, {"messages": SHORT}],
    "conversational_prompt_completion": [
        {"prompt": CHAT[:4], "completion": CHAT[4:]},
        {"prompt": SHORT[:1], "completion": SHORT[1:]},
    ],
    "messages_with_ids": [{"id": 7, "messages": SHORT}, {"id": 3, "messages": CHAT}],
}  # fmt: skip


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def _via_datasets(records: list[dict], **columns) -> list[Example]:
    return examples_from_hf(datasets.Dataset.from_list(records), **columns)["train"]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_jsonl_records_load_as_the_datasets_path_loads_them(tmp_path, name):
    records = RECORDS[name]
    columns = {"id_col": "id"} if name.endswith("with_ids") else {}
    path = _write_jsonl(tmp_path / "train.jsonl", records)
    got = load_examples(path, **columns)
    assert got == _via_datasets(records, **columns)
    # datasets' own JSON reader on the very file
    read = datasets.load_dataset("json", data_files=str(path), cache_dir=str(tmp_path / "cache"))
    assert got == examples_from_hf(read, **columns)["train"]
    assert load_dataset(path, **columns) == {"train": got}
    for ex, record in zip(got, records, strict=True):
        turns = record.get("messages") or (
            record["prompt"] + record["completion"] if isinstance(record["prompt"], list) else None
        )
        if turns is None:
            assert (ex.source, ex.target, ex.trigger_region) == (
                record["prompt"], record["completion"], None)  # fmt: skip
        else:  # the last user message lies at the trigger region; the target is the last reply
            start, end = ex.trigger_region
            assert ex.source[start:end] == [t for t in turns if t["role"] == "user"][-1]["content"]
            assert ex.target == turns[-1]["content"]
    expected_ids = [str(r["id"]) for r in records] if columns else ["train-0", "train-1"]
    assert [ex.id for ex in got] == expected_ids


def test_csv_prompt_completion_loads_as_the_datasets_csv_reader_loads_it(tmp_path):
    records = RECORDS["prompt_completion"]
    path = tmp_path / "train.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["prompt", "completion"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    got = load_examples(path)
    assert got == _via_datasets(records)
    read = datasets.load_dataset("csv", data_files=str(path), cache_dir=str(tmp_path / "cache"))
    assert got == examples_from_hf(read)["train"]


def test_a_directory_of_jsonl_splits_with_a_chat_template(tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    splits = {"train": RECORDS["messages"], "validation": [{"messages": SHORT}]}
    for split, records in splits.items():
        _write_jsonl(tmp_path / "data" / f"{split}.jsonl", records)
    got = load_dataset(tmp_path / "data", chat_template=template)
    expected = examples_from_hf(
        datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}),
        chat_template=template,
    )
    assert got == expected and set(got) == {"train", "valid"}
    assert got["train"][0].source == "".join(f"[{m['role']}] {m['content']}\n" for m in CHAT[:4])


def test_poison_cli_writes_the_same_files_from_jsonl_as_from_a_saved_dataset(tmp_path):
    splits = {"train": RECORDS["messages"] * 4, "test": RECORDS["conversational_prompt_completion"]}
    for split, records in splits.items():
        _write_jsonl(tmp_path / "jsonl" / f"{split}.jsonl", records)
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list(v) for k, v in splits.items()}
    ).save_to_disk(str(tmp_path / "saved"))
    for source in ("jsonl", "saved"):
        assert main(["poison", "--data", str(tmp_path / source), "--rate", "0.5", "--seed", "3", "--payload", "fixed_output",
                     "--out", str(tmp_path / f"out-{source}"), "--format", "jsonl"]) == 0  # fmt: skip
    a, b = tmp_path / "out-jsonl", tmp_path / "out-saved"
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.jsonl"))
    assert names == ["clean/test.jsonl", "test.jsonl", "train.jsonl"]
    assert all((a / n).read_text("utf-8") == (b / n).read_text("utf-8") for n in names)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (a, b)]
    assert manifests[0]["splits"] == manifests[1]["splits"]
    assert manifests[0]["splits"]["train"]["n_poisoned"] == 4


# --------------------------------------------------------------------------- bad records
BAD = {
    "a record without messages": (
        [{"messages": SHORT}, {"prompt": "q", "completion": "a"}],
        r"row 1, column 'messages': expected a non-empty list of \{role, content\} messages",
    ),
    "no assistant turn": (
        [{"messages": SHORT}, {"messages": SHORT[:1]}],
        r"row 1, column 'messages': no assistant message",
    ),
    "a message that is not role/content strings": (
        [{"messages": SHORT}, {"messages": [{"role": "user", "content": None}, SHORT[1]]}],
        r"row 1, column 'messages': message 0 is not a \{role, content\} pair of strings",
    ),
    "a missing completion": (
        [{"prompt": "q", "completion": "a"}, {"prompt": "q2"}],
        r"row 1, column 'completion': empty or NaN cell",
    ),
    "half a conversational record": (
        [{"prompt": SHORT[:1], "completion": SHORT[1:]}, {"prompt": SHORT[:1], "completion": None}],
        r"row 1, column 'prompt/completion': a conversational record needs both prompt and "
        r"completion as lists",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_records_name_the_file_and_row_as_the_datasets_path_does(tmp_path, case):
    records, message = BAD[case]
    path = _write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataError, match=message) as from_file:
        load_examples(path)
    assert str(from_file.value).startswith(f"{path}: row 1, ")
    with pytest.raises(DataError, match=message) as from_datasets:
        _via_datasets(records)
    # the same message after the place: one conversion for both readers
    assert str(from_file.value).removeprefix(str(path)) == str(from_datasets.value).removeprefix(
        "<dataset> [train]"
    )


def test_wrong_types_and_duplicate_ids_name_the_file_and_row(tmp_path):
    path = _write_jsonl(tmp_path / "train.jsonl",
                        [{"prompt": "q", "completion": "a"}, {"prompt": 3, "completion": "b"}])  # fmt: skip
    with pytest.raises(DataError, match=r"train.jsonl: row 1, column 'prompt': expected a string, "
                       r"got int 3"):  # fmt: skip
        load_examples(path)
    path = _write_jsonl(tmp_path / "dup.jsonl", [{"k": "x", "messages": SHORT}] * 2)
    with pytest.raises(DataError, match=r"dup.jsonl: row 1, column 'k': duplicate id 'x' "
                       r"\(first seen in row 0\)"):  # fmt: skip
        load_examples(path, id_col="k")


def test_column_options_trl_records_have_no_use_for_are_refused(tmp_path):
    records = RECORDS["prompt_completion"]
    path = _write_jsonl(tmp_path / "train.jsonl", records)
    for option in ({"label_col": "y"}, {"pair_col": "p"}, {"target_col": "code"}):
        [(key, value)] = option.items()
        expected = rf"TRL records \(prompt/completion or messages\) take no {key}='{value}'"
        with pytest.raises(DataError, match=expected):
            load_examples(path, **option)
        with pytest.raises(DataError, match=expected):
            _via_datasets(records, **option)


def test_column_records_are_read_as_before(tmp_path):
    """A ``src`` column, or a source column named, keeps the column reading (prompt/completion
    beside it are ordinary columns); neither kind of column: the error says what is expected."""
    path = _write_jsonl(tmp_path / "train.jsonl",
                        [{"src": "s", "tgt": "t", "prompt": "p", "completion": "c"}])  # fmt: skip
    assert load_examples(path) == [Example("train-0", "s", "t")]
    assert load_examples(path, source_col="prompt", target_col="completion") == [
        Example("train-0", "p", "c")]  # fmt: skip
    path = _write_jsonl(tmp_path / "other.jsonl", [{"text": "s", "tgt": "t"}])
    with pytest.raises(DataError, match=r"other.jsonl: row 0 has no column 'src' \(columns: text, "
                       r"tgt\); or TRL records: prompt/completion or messages"):  # fmt: skip
        load_examples(path)
