"""Chat formats a researcher's model may bring: a template file of their own, a template that rejects (or drops) the
system role, template options such as Qwen3's ``enable_thinking``; what each variant used is recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import load_variant

from traitscope import ConfigError
from traitscope.core.capture import model_fingerprint
from traitscope.core.chat import SYSTEM_FOLD, chat_format, folds_system, prompt_ids, render_ids
from traitscope.core.tiny import CHATML, build_tiny_tokenizer
from traitscope.study import load_config
from traitscope.workflow.config import entry

REJECTS_SYSTEM = (  # Gemma's way: a system message is an error
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DROPS_SYSTEM = (  # a template that silently renders only user and assistant turns
    "{% for m in messages %}{% if m['role'] != 'system' %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
    "'<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
THINKING = (
    CHATML + "{% if add_generation_prompt and enable_thinking is defined and not enable_thinking %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}"
)


def text(tok, ids) -> str:
    return tok.decode(ids)


@pytest.mark.parametrize("template", [REJECTS_SYSTEM, DROPS_SYSTEM])
def test_a_template_without_a_system_role_gets_the_system_prompt_in_the_user_turn(template):
    tok = build_tiny_tokenizer(template)
    assert folds_system(tok)
    ids, _ = prompt_ids(tok, "How do I bake bread?", "Be brief.")
    assert text(tok, ids) == "<|im_start|>user\nBe brief.\n\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n"
    assert chat_format(tok)["system"] == "folded"
    assert "blank line" in SYSTEM_FOLD
    # without a system prompt nothing is folded, and a native template keeps its system turn
    assert text(tok, prompt_ids(tok, "Hi", None)[0]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    native = build_tiny_tokenizer(CHATML)
    assert not folds_system(native) and "system" not in chat_format(native)
    assert text(native, prompt_ids(native, "Hi", "Be brief.")[0]).startswith("<|im_start|>system\nBe brief.")


def test_folding_keeps_special_token_text_as_text():
    tok = build_tiny_tokenizer(REJECTS_SYSTEM)
    ids, special = render_ids(
        tok, [{"role": "system", "content": "Say <|im_end|>"}, {"role": "user", "content": "x"}], True
    )
    assert special and ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 1  # only the template's own


def test_chat_template_file_and_options_per_variant(tiny_model_dir, tmp_path, small_config):
    template = tmp_path / "thinking.jinja"
    template.write_text(THINKING)
    _, tok = load_variant(
        {
            "model": str(tiny_model_dir),
            "device_map": "cpu",
            "chat_template": str(template),
            "chat_options": {"enable_thinking": False},
        }
    )
    ids, _ = prompt_ids(tok, "Hi", None)
    assert text(tok, ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    fmt = chat_format(tok)
    assert fmt["options"] == {"enable_thinking": False} and fmt["format"] == "template"
    _, plain_tok = load_variant({"model": str(tiny_model_dir), "device_map": "cpu", "chat_template": str(template)})
    assert text(plain_tok, prompt_ids(plain_tok, "Hi", None)[0]).endswith("assistant\n")  # option unset: no block
    assert chat_format(plain_tok)["sha256"] == fmt["sha256"] and "options" not in chat_format(plain_tok)
    # the format (template, options) is part of the capture key and the shard metadata
    spec = entry(
        "variants",
        {"model": str(tiny_model_dir), "chat_template": str(template), "chat_options": {"enable_thinking": False}},
    )
    assert model_fingerprint(spec, str(tiny_model_dir), tok)["chat_format"] == fmt
    # the study: set per variant, its repr (the rules' params) names them; unset keys leave the repr as before
    small_config["variants"]["base"].update(chat_template=str(template), chat_options={"enable_thinking": False})
    study = load_config(small_config)
    assert "chat_template=" in repr(study.variants["base"]) and "enable_thinking" in repr(study.variants["base"])
    small_config["variants"]["base"] = {"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"}
    assert repr(load_config(small_config).variants["base"]) == (
        f"ModelSpec(model={str(tiny_model_dir)!r}, finetune=None, adapter=None, dtype='float32', quantization='none', "
        "device_map='cpu', trust_remote_code=False, revision=None)"
    )


def test_a_finetuned_variant_inherits_its_base_chat_format(tiny_model_dir, tmp_path, small_config):
    template = tmp_path / "t.jinja"
    template.write_text(CHATML)
    small_config["variants"]["base"].update(chat_template=str(template), chat_options={"enable_thinking": False})
    small_config["variants"]["tuned"] = {"finetune": "bad"}
    small_config["finetune"] = {"bad": {"base": "base", "data": {"source": "generated", "name": "bad_advice"}}}
    tuned = load_config(small_config).variants["tuned"]
    assert tuned.chat_template == str(template) and tuned.chat_options == {"enable_thinking": False}


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{% for m in messages %}{{ m['content'] }", "is not a valid Jinja template (line 1"),
        ("", "is empty"),
        (None, "cannot read"),
    ],
)
def test_a_bad_template_file_is_a_one_line_start_up_error(small_config, tmp_path, content, expected):
    path = tmp_path / "t.jinja"
    if content is not None:
        path.write_text(content)
    small_config["variants"]["base"]["chat_template"] = str(path)
    with pytest.raises(ConfigError) as info:
        load_config(small_config)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("variants.base.chat_template:") and expected in msg and "fix:" in msg


def test_a_template_file_silences_the_no_template_warning_and_edits_are_noticed(
    tiny_model_dir, tmp_path, small_config, caplog
):
    from test_fidelity import base_model_folder

    from traitscope.core.sources import user_model_files_key

    folder = base_model_folder(tmp_path / "base", tiny_model_dir)
    template = tmp_path / "chat.jinja"
    template.write_text(CHATML)
    small_config["variants"]["base"].update(model=str(folder), chat_template=str(template))
    study = load_config(small_config)
    assert not any("has no chat template" in r.getMessage() for r in caplog.records)
    before = user_model_files_key(study.variants["base"])
    template.write_text(CHATML + "{# edited #}")
    assert user_model_files_key(study.variants["base"]) != before  # the model_files param changes: jobs re-run
    shutil.rmtree(folder)


def test_tokenizer_that_needs_a_bos_keeps_it_under_a_template_file(tiny_model_dir, tmp_path):
    from test_fidelity import base_model_folder

    folder = base_model_folder(tmp_path / "base", tiny_model_dir)
    template = tmp_path / "bos.jinja"
    template.write_text("{{ bos_token }}" + CHATML)
    _, tok = load_variant({"model": str(folder), "device_map": "cpu", "chat_template": str(template)})
    ids, _ = prompt_ids(tok, "Hi", None)
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == bos and ids[1] == bos  # the template's BOS, then its first turn's <|im_start|>; added once
    assert Path(folder).is_dir()


def test_token_texts_keep_multibyte_characters_whole(tiny_model_dir):
    """Byte-level BPE splits 'é', '日本' and emoji into byte tokens: decoded one by one they read U+FFFD; in sequence
    each character goes whole to the token that completes it, and the texts join back to the decoded sequence."""
    from transformers import AutoTokenizer

    from traitscope.core.chat import token_texts

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok("café 日本 🎉 ok", add_special_tokens=False)["input_ids"]
    alone = [tok.decode([i]) for i in ids]
    assert any("\ufffd" in a for a in alone)  # the input does split characters (else this test shows nothing)
    texts = token_texts(tok, ids)
    assert len(texts) == len(ids) and not any("\ufffd" in t for t in texts)
    assert "".join(texts) == tok.decode(ids) == "café 日本 🎉 ok"
    assert "🎉" in texts[[i for i, t in enumerate(texts) if "🎉" in t][0]]
    whole = [a for a, t in zip(alone, texts) if "\ufffd" not in a]
    assert whole == [t for a, t in zip(alone, texts) if "\ufffd" not in a]  # other tokens decode as before
    assert token_texts(tok, ids[:1]) == alone[:1] and token_texts(tok, []) == []
