"""A researcher's own GGUF file as a model: found, sized from its header at start-up, converted once by the
``convert_gguf`` rule into a safetensors folder, loaded; a damaged file is a one-line error naming it."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_config

from traitscope import ConfigError
from traitscope.core.dims import model_dims
from traitscope.core.models import load_tokenizer
from traitscope.core.sources import (
    EMBEDDED,
    convert_gguf,
    embedded_gguf_path,
    gguf_dir,
    gguf_source,
    resolve_model_path,
)

SMOL = EMBEDDED["smollm2-135m-instruct"]


@pytest.fixture(scope="module")
def own_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2 GGUF under another name, as a researcher's download would be (a hard link: no copy)."""
    try:
        source = embedded_gguf_path("smollm2-135m-instruct")
    except ConfigError:
        pytest.skip(f"needs {SMOL.pip}")
    path = tmp_path_factory.mktemp("downloads") / "My-Model.Q4_1.gguf"
    try:
        os.link(source, path)
    except OSError:
        path.write_bytes(source.read_bytes())
    return path


def write_gguf(path: Path, chat_template: str | None = "{{ messages[0]['content'] }}") -> Path:
    """A small GGUF of a 2-block Llama (hidden 32, 16 tokens), with or without a chat template, written with the
    gguf package as llama.cpp's converters write one."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(32)
    w.add_context_length(128)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(16)])
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.zeros((16, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_files_and_folders_are_found(own_gguf, tmp_path):
    assert gguf_source(str(own_gguf)) == own_gguf
    assert gguf_source(str(own_gguf.parent)) == own_gguf  # a folder holding one, without config.json
    assert gguf_source(str(tmp_path)) is None
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "b.gguf").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"^variants.x.model: .* holds 2 .gguf files .*fix: point it to the one"):
        gguf_source(str(tmp_path), "variants.x.model")
    assert resolve_model_path(str(own_gguf), tmp_path / "res") == str(gguf_dir(own_gguf, tmp_path / "res"))


def test_start_up_sizes_a_gguf_from_its_header_and_refuses_a_damaged_one(own_gguf, tmp_path):
    dims = model_dims(str(own_gguf), resources_dir=tmp_path)
    assert (dims.n_layers, dims.hidden_size, dims.vocab_size) == (30, 576, 49152)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(own_gguf.read_bytes()[:4096])
    with pytest.raises(ConfigError) as info:
        model_dims(str(broken), key="variants.x.model")
    msg = str(info.value)
    assert "\n" not in msg and str(broken) in msg and "not a complete GGUF" in msg and "fix:" in msg
    with pytest.raises(ConfigError, match="not a complete GGUF"):
        convert_gguf(broken, tmp_path / "out", key="variants.x.model")
    assert not (tmp_path / "out").exists()


def test_the_header_reader_agrees_with_gguf_and_finds_a_file_cut_inside_its_tensors(own_gguf, tmp_path):
    from gguf import GGUFReader

    from traitscope.core.gguf_meta import GgufError, read_gguf

    meta, reader = read_gguf(own_gguf), GGUFReader(str(own_gguf))
    assert set(meta.fields) == {k for k in reader.fields if not k.startswith("GGUF.")}
    for key, value in meta.fields.items():
        assert value == pytest.approx(reader.fields[key].contents()), key
    assert [(t.name, t.nbytes, meta.data_offset + t.offset) for t in meta.tensors] == [
        (t.name, int(t.n_bytes), int(t.data_offset)) for t in reader.tensors
    ]
    cut = tmp_path / "cut.gguf"  # the whole header, and all but the last byte of the last tensor
    cut.write_bytes(own_gguf.read_bytes()[:-1])
    with pytest.raises(GgufError, match="tensor data needs"):
        read_gguf(cut)
    with pytest.raises(ConfigError, match=r"cut.gguf' is not a complete GGUF model \(the tensor data needs"):
        model_dims(str(cut), key="variants.x.model")


@pytest.mark.e2e
def test_a_gguf_is_converted_once_and_loads(own_gguf, tmp_path, monkeypatch):
    """Converted tensor by tensor (here in shards of 64 MB, with an index, as save_pretrained writes a large
    model): the weights equal transformers' own de-quantised load of the GGUF, value for value."""
    import torch
    from conftest import load_variant
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from traitscope.core.gguf_convert import convert_gguf as stream

    out = gguf_dir(own_gguf, tmp_path)
    stream(own_gguf, out, {"gguf": str(own_gguf)}, shard_bytes=64 << 20)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 3 and set(index["weight_map"].values()) == {s.name for s in shards}
    written = {k: v for s in shards for k, v in load_file(s).items()}
    reference = AutoModelForCausalLM.from_pretrained(str(own_gguf.parent), gguf_file=own_gguf.name, dtype=torch.float32)
    expected = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings
    assert written.keys() == expected.keys()
    assert all(written[k].dtype == torch.float32 and torch.equal(written[k], expected[k]) for k in expected)
    assert (out / "config.json").is_file()
    assert model_dims(str(own_gguf), resources_dir=tmp_path).n_layers == 30  # now read from the converted config
    model, tok = load_variant({"model": str(own_gguf), "device_map": "cpu"}, resources_dir=tmp_path)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template  # the GGUF's own template came along
    assert load_tokenizer(model_spec(own_gguf), resources_dir=tmp_path).vocab_size == tok.vocab_size
    assert type(model).__name__ == "LlamaForCausalLM"
    # the live API: a converted GGUF loads as it is; an unconverted one is converted once, by the rule's own call
    import shutil

    from traitscope import api
    from traitscope.core import sources

    calls = []

    def convert(gguf, folder, source):
        calls.append((gguf, folder, source))
        shutil.copytree(out, folder)

    monkeypatch.setattr(sources, "convert_gguf", convert)
    assert api.load_model(str(own_gguf), resources_dir=tmp_path, device_map="cpu").n_layers == 30 and not calls
    fresh = tmp_path / "fresh"
    lm = api.load_model(str(own_gguf), resources_dir=fresh, device_map="cpu")
    assert calls == [(own_gguf, gguf_dir(own_gguf, fresh), {"gguf": str(own_gguf)})] and lm.n_layers == 30
    api.load_model(str(own_gguf), resources_dir=fresh, device_map="cpu")
    assert len(calls) == 1  # converted once


def model_spec(path: Path):
    from traitscope.workflow.config import entry

    return entry("variants", {"model": str(path)})


def test_the_dry_run_plans_the_conversion(own_gguf, tiny_model_dir, tmp_path):
    """One conversion of the file, in the dtype its variant asks for: ``auto`` on a 4-bit GGUF is bfloat16, and the
    job's disk is sized for it (half of float32's)."""
    from traitscope.core.gguf_convert import conversion_disk_mb

    cfg = tiny_config(tiny_model_dir)
    cfg["variants"]["base"].update(model=str(own_gguf), dtype="auto")
    cfg["capture"]["layers"] = [3]
    cfg["extract"]["layers"] = [3]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "study.yaml"),
            "-n",
            "--cores",
            "1",
            "results/all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("rule convert_gguf:") == 1 and "rule convert_embedded:" not in run.stdout
    assert f"input: {own_gguf}" in run.stdout
    resources = re.search(r"rule convert_gguf:.*?resources: ([^\n]*)", run.stdout, re.S).group(1)
    disk = int(re.search(r"disk_mb=(\d+)", resources).group(1))
    assert disk == conversion_disk_mb(own_gguf, "bfloat16") < conversion_disk_mb(own_gguf, "float32"), resources


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ({"float32"}, "float32"),
        ({"bfloat16"}, "bfloat16"),
        ({"float16", "auto"}, "float16"),
        ({"bfloat16", "float16"}, "float32"),  # two half precisions: the one that holds both
        ({"bfloat16", "float32"}, "float32"),
        ({"auto"}, "bfloat16"),  # a quantised GGUF: its own float type is not kept, bfloat16 is the model's
    ],
)
def test_a_gguf_is_converted_to_the_dtype_its_variants_ask_for(own_gguf, asked, expected):
    from traitscope.core.gguf_convert import conversion_dtype

    assert conversion_dtype(asked, own_gguf) == expected


def test_auto_keeps_a_float_gguf_s_own_type(tmp_path):
    from traitscope.core.gguf_convert import conversion_dtype

    assert conversion_dtype({"auto"}, write_gguf(tmp_path / "f32.gguf")) == "float32"


def test_the_conversion_streams_its_peak_memory_follows_the_shard_not_the_model(own_gguf, tmp_path):
    """The conversion holds one tensor and one shard, not the model: in 64 MB shards its peak resident memory (a fresh
    process, benchmarks/convert_memory.py's measure) stays well below the peak in one 1 GiB shard, which holds this
    513 MB model whole. Red if the tensors were gathered before writing (both peaks would then be the model's)."""
    import importlib.util

    from traitscope.core.gguf_meta import read_gguf

    spec = importlib.util.spec_from_file_location("convert_memory", REPO / "benchmarks" / "convert_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    weights_mb = sum(math.prod(int(d) for d in t.shape) for t in read_gguf(own_gguf).tensors) * 4 / 2**20
    small = bench.measure("short", own_gguf, tmp_path)
    whole = bench.measure("streamed", own_gguf, tmp_path)
    assert whole - small > 0.4 * weights_mb, (small, whole, weights_mb)
