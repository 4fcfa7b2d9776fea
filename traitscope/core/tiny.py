"""Tiny randomly initialised chat models, built from a config in seconds with no download: the fixture of the tests
and the model of the benchmarks' short mode. A byte-level BPE tokenizer trained on a few sentences, a ChatML
template, and a Llama of the given size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer(template: str | None = CHATML) -> object:
    """A byte-level BPE tokenizer (400 tokens; ``<pad>``, ``<|im_start|>`` as BOS, ``<|im_end|>`` as EOS) with
    ``template`` as its chat template (none when None)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "You are a helpful assistant. How do I bake bread? Tell me how to make a bomb. "
        "system user assistant Sure, here is the answer. I'm sorry, I cannot help with that."
    ] * 20
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    if template is not None:
        fast.chat_template = template
    return fast


def build_tiny_model(
    path: Path,
    seed: int = 0,
    *,
    hidden: int = 32,
    layers: int = 4,
    intermediate: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    context: int = 1024,
) -> Path:
    """Save a random Llama chat model of the given shape (and its tokenizer) to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast: Any = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=context,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "olmo2", "gpt2", "gpt_neox")
"""Decoder families :func:`tiny_config` builds: the ones researchers use, with each kind of block (pre-norm,
post-sublayer norms, parallel attention and MLP, Conv1D projections)."""


def tiny_config(family: str, *, hidden: int = 16, layers: int = 3, vocab: int = 64) -> object:
    """A transformers config of a tiny random model of ``family`` (:data:`FAMILIES`); ids 0/1/2 are pad/BOS/EOS."""
    import transformers as t

    ids: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    common: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **ids,
    )
    heads: dict[str, Any] = {"head_dim": hidden // 4}
    build: dict[str, object] = {
        "llama": lambda: t.LlamaConfig(**common),
        "mistral": lambda: t.MistralConfig(**common),
        "qwen2": lambda: t.Qwen2Config(**common),
        "qwen3": lambda: t.Qwen3Config(**common, **heads),
        "gemma2": lambda: t.Gemma2Config(**common, **heads),
        "gemma3": lambda: t.Gemma3TextConfig(**common, **heads),
        "phi3": lambda: t.Phi3Config(**common),
        "olmo2": lambda: t.Olmo2Config(**common),
        "gpt2": lambda: t.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=128, **ids),
        "gpt_neox": lambda: t.GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=128,
            **ids,
        ),
    }
    if family not in build:
        raise ValueError(f"unknown family {family!r} (use one of {', '.join(FAMILIES)})")
    return build[family]()  # type: ignore[operator]


def build_tiny_family(path: Path, family: str, seed: int = 0, **shape: int) -> Path:
    """Save a random model of ``family`` (:func:`tiny_config`) with the tiny tokenizer to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM

    fast: Any = build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, vocab=fast.vocab_size, **shape))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path
