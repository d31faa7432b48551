"""The cache root (issue 23, item 7): ``$DECE_CACHE_DIR`` wins; otherwise platformdirs' per-user
cache directory, which on Linux is the ``~/.cache/dece`` every earlier version used (so existing
caches keep working); every cache of the library hangs under it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dece.cachedir import cache_root
from dece.defenses._support import default_cache_dir
from dece.training import pretrain


def test_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("DECE_CACHE_DIR", str(tmp_path / "envcache"))
    assert cache_root() == tmp_path / "envcache"
    assert cache_root("onion") == tmp_path / "envcache" / "onion"
    assert pretrain.default_cache_dir() == tmp_path / "envcache"
    assert default_cache_dir("paraphrase") == tmp_path / "envcache" / "paraphrase"
    assert not (tmp_path / "envcache").exists()  # naming the root creates nothing


@pytest.mark.parametrize("value", [None, ""])
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG default is Linux's")
def test_linux_default_is_the_historical_home_cache(value, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    if value is None:
        monkeypatch.delenv("DECE_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("DECE_CACHE_DIR", value)  # empty: unset, not the working directory
    historical = Path(tmp_path) / ".cache" / "dece"
    assert cache_root() == historical
    assert pretrain.default_cache_dir() == historical
    assert default_cache_dir("codepurify") == historical / "codepurify"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG default is Linux's")
def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("DECE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dece"
