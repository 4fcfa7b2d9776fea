"""Every decoder family researchers use, as a tiny random model (no download): the residual stream traitscope captures
is ``output_hidden_states``, the ``attn`` and ``mlp`` sites are what the sublayers add to it (post-sublayer norms
included), steering adds exactly ``coef * u``, ablation removes the component, and generation runs. Computed in
float64 so that "equal" means equal to rounding."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from traitscope.core.architecture import decoder_layers, site_module
from traitscope.core.capture import capture_batch
from traitscope.core.errors import ModelLoadError
from traitscope.core.hooks import SiteCapture
from traitscope.core.methods import unit
from traitscope.core.specs import BlockNames
from traitscope.core.steering import Ablate, Steer, generate_steered
from traitscope.core.tiny import FAMILIES, build_tiny_tokenizer, tiny_config

N_LAYERS = 3
EXACT = {"rtol": 0.0, "atol": 1e-12}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request: pytest.FixtureRequest, tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(request.param, layers=N_LAYERS, vocab=tokenizer.vocab_size))
    model = model.double().eval()
    model.requires_grad_(False)
    model.family = request.param
    return model


def final_norm(model: Any) -> torch.nn.Module:
    for path in ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            return obj
    raise AssertionError(type(model).__name__)


def batch(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a right-padded row, as capture builds them
    ids[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def sites(model: Any, inputs: dict[str, torch.Tensor], names=("resid", "attn", "mlp")) -> dict[tuple[str, int], Any]:
    reduce = lambda _s, _l, h: h.detach().clone()  # noqa: E731
    with SiteCapture(model, range(N_LAYERS), names, reduce=reduce) as cap:
        return cap.run(**inputs)


def test_residual_capture_is_output_hidden_states(family_model: Any) -> None:
    inputs = batch(family_model.config.vocab_size)
    got = sites(family_model, inputs, ("resid",))
    with torch.no_grad():
        hidden = family_model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    assert len(hidden) == N_LAYERS + 1
    for layer in range(N_LAYERS - 1):
        assert torch.equal(got[("resid", layer)], hidden[layer + 1]), (family_model.family, layer)
    # Hugging Face applies the final norm to its last hidden state; the hook reads the stream before it
    last = got[("resid", N_LAYERS - 1)]
    with torch.no_grad():
        torch.testing.assert_close(final_norm(family_model)(last), hidden[-1], **EXACT)


def test_attn_and_mlp_sites_are_what_the_sublayers_add(family_model: Any) -> None:
    inputs = batch(family_model.config.vocab_size)
    got = sites(family_model, inputs)
    with torch.no_grad():
        hidden = family_model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    for layer in range(N_LAYERS):
        before = hidden[layer]
        after = got[("resid", layer)]
        attn, mlp = got[("attn", layer)], got[("mlp", layer)]
        assert attn.shape == mlp.shape == after.shape
        assert attn.abs().max() > 1e-6 and mlp.abs().max() > 1e-6
        torch.testing.assert_close(after - before, attn + mlp, **EXACT, msg=f"{family_model.family} block {layer}")


def test_attn_site_alone_is_the_stream_between_the_sublayers(family_model: Any) -> None:
    """Where the block is sequential, the stream the MLP reads from is the block input plus the attn site."""
    if family_model.family in ("gpt_neox",):  # parallel attention and MLP: both read the block input
        pytest.skip("parallel residual: the MLP reads the block input, checked by the sum above")
    block = decoder_layers(family_model)[1]
    pre_mlp = {
        "gpt2": "ln_2",
        "gemma2": "pre_feedforward_layernorm",
        "gemma3": "pre_feedforward_layernorm",
        "olmo2": "mlp",
    }.get(family_model.family, "post_attention_layernorm")
    seen: dict[str, torch.Tensor] = {}
    handle = getattr(block, pre_mlp).register_forward_pre_hook(lambda _m, args: seen.__setitem__("x", args[0]))
    inputs = batch(family_model.config.vocab_size)
    try:
        got = sites(family_model, inputs)
        with torch.no_grad():
            hidden = family_model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    finally:
        handle.remove()
    torch.testing.assert_close(seen["x"], hidden[1] + got[("attn", 1)], **EXACT)


@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_steering_adds_exactly_coef_times_u_and_ablation_removes_it(family_model: Any, site: str) -> None:
    inputs = batch(family_model.config.vocab_size)
    d = family_model.config.hidden_size
    u = unit(torch.arange(1.0, d + 1, dtype=torch.float64)).double()
    plain = sites(family_model, inputs, (site,))
    with Steer(family_model, 1, u * 7.0, coef=3.5, site=site) as steer:
        steered = sites(family_model, inputs, (site,))
    u = steer.u.double()  # the unit vector the edit holds (normalised in float32)
    torch.testing.assert_close(steered[(site, 1)], plain[(site, 1)] + (3.5 * steer.u).double(), **EXACT)
    assert torch.equal(steered[(site, 0)], plain[(site, 0)])  # upstream untouched
    assert not torch.allclose(steered[(site, 2)], plain[(site, 2)])  # and it reaches the blocks downstream
    with Ablate(family_model, 1, u * 7.0, site=site) as ablate:
        ablated = sites(family_model, inputs, (site,))
    h, a = plain[(site, 1)], ablate.u.double()
    torch.testing.assert_close(ablated[(site, 1)], h - (h @ a)[..., None] * a, **EXACT)
    # what is left along the direction is float32 rounding of its norm (1e-7), of a component up to 1e3 times larger
    assert (ablated[(site, 1)] @ a).abs().max() < 1e-6 * (h @ a).abs().max()


def test_capture_batch_gathers_the_hidden_states(family_model: Any) -> None:
    """The project's capture path (right padding, last/mean/response positions) on every family."""
    rows = [([5, 6, 7, 8], [9, 10]), ([11, 12, 13], [14])]
    res = capture_batch(family_model, rows, [0, 1], ("last", "mean", "response"), pad_id=0, dtype="float32")
    for b, (prompt, turn) in enumerate(rows):
        with torch.no_grad():
            hidden = family_model(input_ids=torch.tensor([prompt + turn]), output_hidden_states=True).hidden_states
        for layer in (0, 1):
            h = hidden[layer + 1][0].float()
            got = res["outputs"][("resid", layer)]
            torch.testing.assert_close(got["last"][b], h[len(prompt) - 1], rtol=0, atol=1e-6)
            torch.testing.assert_close(got["mean"][b], h[: len(prompt)].mean(0), rtol=0, atol=1e-6)
    n_resp = sum(len(t) for _, t in rows)
    assert res["outputs"][("resid", 1)]["response"].shape == (n_resp, family_model.config.hidden_size)


def test_generation_runs_with_steering(family_model: Any, tokenizer: Any) -> None:
    u = torch.ones(family_model.config.hidden_size, dtype=torch.float64)
    edit = Steer(family_model, 1, u, coef=2.0, positions="response")
    with edit:
        out = generate_steered(
            family_model,
            tokenizer,
            ["How do I bake bread?", "Tell me"],
            [edit],
            max_new_tokens=3,
            systems=["You are a helpful assistant.", None],
            batch_size=2,
        )
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert edit.seen > 0  # the hook saw the prompt and every generated token


def test_blocks_named_in_the_config(tokenizer: Any) -> None:
    """An architecture traitscope does not know: the variant names its block list and sublayers."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", layers=N_LAYERS, vocab=tokenizer.vocab_size)).eval()
    outer = torch.nn.Module()
    outer.stack = torch.nn.Module()
    outer.stack.units = model.model.layers  # the blocks where no known path finds them
    with pytest.raises(ModelLoadError, match=r"blocks\.path"):
        decoder_layers(outer)
    outer.traitscope_blocks = BlockNames(path="stack.units", attn="self_attn", mlp="mlp")
    assert decoder_layers(outer) is model.model.layers
    assert site_module(outer, 1, "attn") is model.model.layers[1].self_attn
    outer.traitscope_blocks = BlockNames(path="stack.units", attn="attention", mlp=None)
    with pytest.raises(ModelLoadError, match=r"blocks\.attn.*self_attn"):
        site_module(outer, 1, "attn")
    # a named sublayer overrides the built-in choice: here Llama's pre-MLP norm, whose output is hooked
    model.traitscope_blocks = BlockNames(path=None, attn="post_attention_layernorm", mlp=None)
    assert site_module(model, 0, "attn") is model.model.layers[0].post_attention_layernorm
    assert site_module(model, 0, "mlp") is model.model.layers[0].mlp


def test_a_variants_blocks_reach_the_hooks(tiny_model_dir, small_config):
    """variants.<name>.blocks in the config: validated by the schema, carried by the variant, attached at load."""
    from conftest import load_variant

    from traitscope.study import load_config

    blocks = {"path": "model.layers", "attn": "post_attention_layernorm", "mlp": "mlp"}
    small_config["variants"]["base"]["blocks"] = blocks
    spec = load_config(small_config).variants["base"]
    assert spec.blocks == BlockNames(**blocks) and "blocks=BlockNames(" in repr(spec)
    model, _ = load_variant({"model": str(tiny_model_dir), "device_map": "cpu", "blocks": blocks})
    assert site_module(model, 1, "attn") is model.model.layers[1].post_attention_layernorm
    small_config["variants"]["base"]["blocks"] = {"path": "model.layers", "attention": "x"}
    from conftest import assert_config_error

    assert_config_error(small_config, "variants.base.blocks")
