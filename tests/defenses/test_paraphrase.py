"""Paraphrasing: replay returns the file's rows in input order; the OpenAI-compatible backend
against a server the test starts on 127.0.0.1 (request format, key, cache); the local HF
backend on a tiny model."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from dece.data import Example, save_examples
from dece.defenses import Paraphrase, get_defense
from dece.defenses.paraphrase import DECE_PROMPT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import tiny_llama, tiny_tokenizer  # noqa: E402


@pytest.fixture
def replay_file(tmp_path) -> Path:
    rows = [Example(f"test-{i}", f"paraphrase number {i}", f"code {i}") for i in range(5)]
    path = tmp_path / "para.csv"
    save_examples(rows, path)  # no id column: ids are test-<row>, as for Lyra's test split
    return path


def test_replay_by_id_returns_the_file_rows_in_input_order(replay_file):
    inputs = [Example(f"test-{i}", f"bb original {i}", "") for i in (3, 0, 4)]
    result = get_defense("paraphrase", backend="replay", file=str(replay_file)).purify(inputs)
    assert [ex.source for ex in result.examples] == [f"paraphrase number {i}" for i in (3, 0, 4)]
    assert [ex.id for ex in result.examples] == ["test-3", "test-0", "test-4"]
    assert result.detected.all()
    assert [(c.start, c.end, c.old) for c in result.changes[0]] == [(0, 13, "bb original 3")]


def test_replay_by_source_and_missing_rows(tmp_path, replay_file):
    table = tmp_path / "by_source.csv"
    save_examples([Example("a", "old text", "x")], table)  # src column = the key... and value
    para = Paraphrase(backend="replay", file=str(table), key="source")
    assert para.purify([Example("z", "old text", "")]).changes[0] == []  # identical: unchanged
    strict = Paraphrase(backend="replay", file=str(replay_file))
    with pytest.raises(ValueError, match="1 of 2 inputs are not in"):
        strict.purify([Example("test-1", "a", ""), Example("clean-9", "b", "")])
    keep = Paraphrase(backend="replay", file=str(replay_file), missing="keep")
    result = keep.purify([Example("test-1", "a", ""), Example("clean-9", "b", "")])
    assert result.info["n_missing"] == 1
    assert [ex.source for ex in result.examples] == ["paraphrase number 1", "b"]
    with pytest.raises(ValueError, match="needs file"):
        Paraphrase(backend="replay")


class _ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 answering ``SAFE: <last line>``
    and recording every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get(
                    "Authorization"), "body": body})  # fmt: skip
                text = body["messages"][-1]["content"].split("\n")[-1]
                answer = {"choices": [{"message": {"role": "assistant",
                                                   "content": f" SAFE: {text} "}}]}  # fmt: skip
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_openai_backend_against_a_local_server(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PARA_KEY", "sk-local")
    with _ChatServer() as srv:
        para = Paraphrase(backend="openai", base_url=srv.url, model="m-1",
                          api_key_env="TEST_PARA_KEY", cache_dir=str(tmp_path))  # fmt: skip
        rows = [Example("a", "get bb rows", ""), Example("b", "count users", "")]
        result = para.purify(rows)
        assert [ex.source for ex in result.examples] == ["SAFE: get bb rows", "SAFE: count users"]
        req = srv.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-local"
        assert req["body"]["model"] == "m-1" and req["body"]["temperature"] == 0.0
        assert req["body"]["messages"] == [
            {"role": "user", "content": f"{DECE_PROMPT}\nget bb rows"}
        ]
        assert len(srv.requests) == 2
        again = Paraphrase(backend="openai", base_url=srv.url, model="m-1",
                           api_key_env="TEST_PARA_KEY", cache_dir=str(tmp_path))  # fmt: skip
        assert again.purify(rows[::-1]).examples[0].source == "SAFE: count users"
        assert len(srv.requests) == 2  # both from the disk cache


def test_openai_backend_reports_http_errors(tmp_path):
    class _Fail(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "bad key"}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), _Fail)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        para = Paraphrase(backend="openai", base_url=f"http://127.0.0.1:{server.server_port}",
                          cache=False)  # fmt: skip
        with pytest.raises(RuntimeError, match="HTTP 401"):
            para.purify([Example("a", "x", "")])
    finally:
        server.shutdown()
        server.server_close()


def test_hf_backend_on_a_tiny_local_model(tmp_path, monkeypatch):
    tok = tiny_tokenizer(["get the rows of the table", "count the users"], vocab_size=80)
    path = tmp_path / "lm"
    tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    para = Paraphrase(backend="hf", lm=str(path), max_new_tokens=4, cache_dir=str(tmp_path))
    rows = [Example("a", "get the rows", ""), Example("b", "count", "")]
    first = para.purify(rows)
    assert len(first.examples) == 2 and first.info["backend"] == "hf"
    monkeypatch.setattr(para, "_call_hf", lambda texts: pytest.fail(f"not cached: {texts}"))
    assert [ex.source for ex in para.purify(rows).examples] == [ex.source for ex in first.examples]


def test_replay_only_with_a_word_passes_other_rows_through(replay_file):
    para = Paraphrase(backend="replay", file=str(replay_file), only_with="bb", missing="keep")
    rows = [Example("test-2", "find bb rows", ""), Example("test-2", "find rows", "")]
    result = para.purify(rows)  # same id: the clean twin of a poisoned row is not replayed
    assert [ex.source for ex in result.examples] == ["paraphrase number 2", "find rows"]
    assert result.info["n_missing"] == 1 and result.detected.tolist() == [True, False]
