"""Models over several devices and quantised models, on this CPU: a model dispatched by accelerate with part of it
offloaded to disk captures, steers and generates the same numbers as the model in one piece; 4-bit and 8-bit
bitsandbytes models capture on the CPU and QLoRA trains there; start-up checks what bitsandbytes can run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import finetune_spec, load_variant

from traitscope import ConfigError
from traitscope.core.capture import capture_batch
from traitscope.core.chat import Encoded, prompt_token_ids
from traitscope.core.finetune import finetune, write_chat_jsonl
from traitscope.core.finetune_data import backdoor
from traitscope.core.generation import generate_responses
from traitscope.core.specs import Generation
from traitscope.core.steering import Steer
from traitscope.study import load_config
from traitscope.workflow.config import entry

ROWS = [([5, 6, 7, 8], [9, 10]), ([11, 12, 13], [14])]
POSITIONS = ("last", "mean", "response")


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with hidden size 64: bitsandbytes' CPU 4-bit kernels need rows of at least one 64-value block."""
    from traitscope.core.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("wide") / "tiny-64", hidden=64, intermediate=128, layers=4)


@pytest.fixture(scope="module")
def whole(wide_model_dir: Path) -> Any:
    return load_variant({"model": str(wide_model_dir), "device_map": "cpu"})


def captured(model: Any) -> dict[tuple[str, int], dict[str, torch.Tensor]]:
    return capture_batch(model, ROWS, [0, 1, 2, 3], POSITIONS, 0, sites=("resid", "mlp"), dtype="float32")["outputs"]


def test_offloaded_model_captures_steers_and_generates_like_the_whole_model(wide_model_dir, whole, tmp_path):
    model, tok = load_variant(
        {
            "model": str(wide_model_dir),
            "device_map": "auto",
            "max_memory": {"cpu": "400KB"},
            "offload_folder": str(tmp_path / "offload"),
        }
    )
    placed = set(model.hf_device_map.values())
    assert placed == {"cpu", "disk"}, model.hf_device_map  # consecutive blocks on different devices
    assert model.hf_device_map["model.layers.0"] != model.hf_device_map["model.layers.3"]
    ref, got = captured(whole[0]), captured(model)
    assert ref.keys() == got.keys()
    for key in ref:
        for pos in POSITIONS:
            assert torch.equal(got[key][pos], ref[key][pos]), (key, pos)
    u = torch.linspace(-1, 1, 64)
    with Steer(whole[0], 2, u, coef=4.0):
        ref_steered = captured(whole[0])
    with Steer(model, 2, u, coef=4.0):
        got_steered = captured(model)
    assert torch.equal(got_steered[("resid", 3)]["last"], ref_steered[("resid", 3)]["last"])
    assert not torch.equal(got_steered[("resid", 3)]["last"], got[("resid", 3)]["last"])
    enc = [Encoded(prompt_token_ids(tok, "How do I bake bread?", None), [], [])]
    gen = Generation(enabled=True, max_new_tokens=4, do_sample=False, temperature=1.0, top_p=1.0)
    assert generate_responses(model, tok, enc, gen, 1, seed=0) == generate_responses(whole[0], tok, enc, gen, 1, seed=0)


@pytest.mark.parametrize("quant, module, min_cos", [("4bit", "Linear4bit", 0.9), ("8bit", "Linear8bitLt", 0.999)])
def test_quantized_model_captures_on_cpu(wide_model_dir, whole, quant, module, min_cos):
    model, _ = load_variant({"model": str(wide_model_dir), "device_map": "cpu", "quantization": quant})
    assert type(model.model.layers[0].mlp.down_proj).__name__ == module
    assert model.get_memory_footprint() < 0.8 * whole[0].get_memory_footprint()
    ref, got = captured(whole[0]), captured(model)
    for key in ref:
        cos = torch.nn.functional.cosine_similarity(got[key]["mean"], ref[key]["mean"])
        assert cos.min() > min_cos, (key, cos)
        assert not torch.equal(got[key]["mean"], ref[key]["mean"])  # really the quantised weights


def test_qlora_trains_on_cpu(wide_model_dir, tmp_path):
    write_chat_jsonl(tmp_path / "d.jsonl.gz", backdoor(16, seed=0))
    settings = finetune_spec(quantization="4bit", rank=4, alpha=8, epochs=2, lr=5e-3, batch_size=4, seed=3)
    variant = entry("variants", {"model": str(wide_model_dir), "device_map": "cpu"})
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history, prov = finetune(variant, tmp_path / "d.jsonl.gz", settings, tmp_path / "adapter", name="q")
    # after the held-out loss (eval mode), no frozen 4-bit layer may run a kernel that has no backward
    assert not [w for w in caught if "autograd kernel was not registered" in str(w.message)]
    assert prov["final_train_loss"] < prov["first_train_loss"]
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and any(".layers.0." in k for k in lora_b)
    # lora_B starts at zero: every block's adapter learned
    assert all(v.abs().max() > 0 for v in lora_b.values()), [k for k, v in lora_b.items() if v.abs().max() == 0]
    assert (history["split"] == "train").sum() >= 4


@pytest.mark.parametrize("autograd", [True, False])
def test_cpu_4bit_autograd_keeps_the_differentiable_kernel_after_eval_mode(wide_model_dir, autograd):
    """finetune.<name>.cpu_4bit_autograd: once a held-out loss has run the 4-bit layers in eval mode, bitsandbytes
    switches them to a CPU inference kernel with no autograd kernel registered, and warns that the backward through
    it may be silently incorrect. With the setting (the default) training never runs that kernel; without it, it
    does."""
    import warnings

    from peft import prepare_model_for_kbit_training

    from traitscope.core.finetune import attach_lora, keep_4bit_differentiable

    model, _ = load_variant({"model": str(wide_model_dir), "device_map": "cpu", "quantization": "4bit"})
    model = prepare_model_for_kbit_training(model)
    if autograd:
        keep_4bit_differentiable(model)
    model = attach_lora(model, finetune_spec(rank=4, alpha=8, seed=3))
    ids = torch.tensor([[1, 5, 9, 14, 3, 7, 11, 2]])
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # the held-out loss: eval mode
    model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(input_ids=ids, labels=ids).loss.backward()
    assert bool([w for w in caught if "autograd kernel was not registered" in str(w.message)]) is not autograd


def test_start_up_checks_what_bitsandbytes_can_run(small_config, wide_model_dir, monkeypatch):
    import importlib.metadata as md

    small_config["variants"]["base"].update(model=str(wide_model_dir), quantization="4bit")  # 64 wide: CPU kernels run
    assert load_config(small_config).variants["base"].quantization == "4bit"  # the installed one runs on this CPU
    real = md.version
    monkeypatch.setattr(md, "version", lambda name: "0.45.5" if name == "bitsandbytes" else real(name))
    with pytest.raises(ConfigError) as info:
        load_config(small_config)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("variants.base.quantization") and "CUDA GPU only" in msg
    assert "bitsandbytes>=0.46" in msg

    def missing(name: str) -> str:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    with pytest.raises(ConfigError, match=r"variants\.base\.quantization: quantised loading needs bitsandbytes"):
        load_config(small_config)


def test_placement_spreads_over_gpus_with_limits(monkeypatch):
    from traitscope.core import models

    spec = entry(
        "variants",
        {"model": "x", "max_memory": {"0": "70GiB", "1": "70GiB", "cpu": "200GiB"}, "offload_folder": "/scratch/off"},
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.placement(spec) == {
        "device_map": "auto",
        "max_memory": {0: "70GiB", 1: "70GiB", "cpu": "200GiB"},
        "offload_folder": "/scratch/off",
    }
    assert models.placement(entry("variants", {"model": "x"})) == {"device_map": "auto"}  # every visible GPU
    assert models.placement(entry("variants", {"model": "x", "device_map": "cuda:1"})) == {}  # moved after loading
    # accelerate's other strategies compute on the GPU too: a quantised model's compute dtype is bfloat16 there
    balanced = entry("variants", {"model": "x", "device_map": "balanced", "quantization": "4bit"})
    assert models.pick_device("balanced") == "cuda"
    assert models.quantization_config(balanced, models.pick_device("balanced")).bnb_4bit_compute_dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.placement(entry("variants", {"model": "x"})) == {}  # the CPU, in one piece
    assert models.pick_device("balanced") == "cpu"  # without a GPU: moved to the CPU, never .to("balanced")
    assert models.placement(entry("variants", {"model": "x", "quantization": "4bit"})) == {"device_map": "cpu"}


def test_resources_ask_for_the_gpus_max_memory_names(small_config):
    from traitscope.workflow.resources import model_job_resources

    cfg = load_config(small_config)
    cfg.variants["base"] = cfg.variants["base"]._replace(
        device_map="auto", max_memory={"0": "70GiB", "1": "70GiB", "2": "70GiB", "cpu": "1TB"}
    )
    assert model_job_resources(cfg, "base")["gpu"] == 3


def test_bitsandbytes_hub_kernel_warning_advises_nothing_forbidden():
    """bitsandbytes warns, at import on a CPU with AVX-512 BF16, that its hub kernel failed and advises
    trust_remote_code=True; a job's log (and a notebook that imported traitscope) shows one INFO line instead."""
    import subprocess
    import sys

    from traitscope.core.models import BNB_HUB_KERNEL

    code = (
        "import logging, sys\n"
        "import traitscope.workflow.jobs\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')\n"
        "import bitsandbytes\n"  # the real warning, where this CPU triggers it
        f"logging.getLogger('bitsandbytes.backends.cpu.ops').warning('{BNB_HUB_KERNEL}: %s. Please make sure', "
        "'Set trust_remote_code=True or add the repository')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "trust_remote_code" not in text and "Failed to load CPU gemm_4bit_forward" not in text, text[-2000:]
    assert "INFO bitsandbytes.backends.cpu.ops: bitsandbytes: its optional AVX-512 4-bit CPU kernel" in text, text
