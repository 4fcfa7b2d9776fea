"""The generated API reference (pdoc): every public function of the live-model API is in it with its example, and a
warning while building it fails the build."""

from __future__ import annotations

import sys

import pytest

from traitscope import api, docs


def test_the_api_reference_builds_and_holds_every_public_function(tmp_path):
    index = docs.build_api(tmp_path / "api")
    assert index.is_file()
    page = (tmp_path / "api" / "traitscope" / "api.html").read_text()
    for name in api.__all__:
        assert f'id="{name}"' in page, name
    assert page.count("&gt;&gt;&gt;") >= len(api.__all__) - 1  # runnable examples rendered (LiveModel's included)
    for module in docs.API_MODULES:
        assert (tmp_path / "api" / (module.replace(".", "/") + ".html")).is_file(), module


def test_a_warning_while_building_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "ts_badmod.py").write_text(
        "from __future__ import annotations\nfrom pathlib import Path\nfrom typing import NamedTuple\n\n"
        "class Broken(NamedTuple):\n    path: Path | None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(docs, "API_MODULES", ("ts_badmod",))
    with pytest.raises(UserWarning, match="Error parsing type annotation"):
        docs.build_api(tmp_path / "out")
    sys.modules.pop("ts_badmod", None)
