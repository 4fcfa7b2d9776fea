"""Chat tokenisation: a prompt in the model's chat template, and the assistant turn that follows it.

What the model sees is exactly the text the researcher gave. Text that spells one of the tokenizer's special tokens
(``<|im_end|>``, ``<|im_start|>system``, ``<bos>``...) inside a prompt, system prompt, prefill or response stays
text: it is tokenised as ordinary characters (``split_special_tokens``), never as the control token, so a row
cannot gain extra turns. The template's own special tokens are kept. Rows where this happened are flagged
(``Encoded.special_text``, the ``special_text`` column of a capture's responses table); ``checks.special_tokens:
refuse`` stops start-up on such prompts instead (:func:`special_text_rows`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import TraitscopeError


class ChatFormatError(TraitscopeError):
    pass


_MARK = "\ue000{}\ue001"  # private-use code points: a placeholder for one message's content while rendering
_MARKS = re.compile("\ue000(\\d+)\ue001")


def special_texts(tokenizer: Any) -> tuple[str, ...]:
    """The strings this tokenizer turns into control tokens (its special and added special tokens)."""
    cached = getattr(tokenizer, "_traitscope_specials", None)
    if cached is not None:
        return tuple(cached)
    texts = {str(t) for t in getattr(tokenizer, "all_special_tokens", None) or []}
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            texts.add(str(getattr(tok, "content", tok)))
    found = tuple(sorted(t for t in texts if t))
    try:
        tokenizer._traitscope_specials = found
    except AttributeError:  # a tokenizer that refuses attributes: computed again next time
        pass
    return found


def has_special_text(tokenizer: Any, *texts: Any) -> bool:
    specials = special_texts(tokenizer)
    return any(isinstance(t, str) and any(s in t for s in specials) for t in texts)


def _ids(tokenizer: Any, text: str, as_text: bool = False) -> list[int]:
    if not text:
        return []
    kwargs = {"split_special_tokens": True} if as_text else {}
    return list(tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"])


def set_chat_format(tokenizer: Any, template: str | None = None, options: dict[str, Any] | None = None) -> None:
    """Give a tokenizer the variant's chat format: ``template`` (the text of ``variants.<name>.chat_template``)
    replaces its own chat template, and ``options`` (``variants.<name>.chat_options``, e.g. ``enable_thinking:
    false``) are passed to the template at every rendering."""
    if template is not None:
        tokenizer.chat_template = template
    tokenizer._traitscope_chat_options = dict(options or {})
    if hasattr(tokenizer, "_traitscope_folds_system"):  # decided for the old template
        del tokenizer._traitscope_folds_system


def chat_options(tokenizer: Any) -> dict[str, Any]:
    return dict(getattr(tokenizer, "_traitscope_chat_options", None) or {})


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return str(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tokenize=False, **chat_options(tokenizer)
        )
    )


SYSTEM_FOLD = "system prompt, a blank line, then the first user message, as that user message"
"""How a system prompt reaches a model whose chat template rejects (or silently drops) the system role."""


def folds_system(tokenizer: Any) -> bool:
    """Whether this tokenizer's chat template rejects the system role (raises) or drops a system message's text:
    then the system prompt is folded into the first user turn (:data:`SYSTEM_FOLD`)."""
    cached = getattr(tokenizer, "_traitscope_folds_system", None)
    if cached is not None:
        return bool(cached)
    probe = "\ue002system\ue003"
    try:
        text = _render(tokenizer, [{"role": "system", "content": probe}, {"role": "user", "content": "u"}], True)
        folds = probe not in text
    except Exception:  # noqa: BLE001 - jinja's raise_exception, TemplateError: the template refuses the role
        folds = True
    try:
        tokenizer._traitscope_folds_system = folds
    except AttributeError:
        pass
    return folds


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """``messages`` with every system message's text put before the next user message's (:data:`SYSTEM_FOLD`)."""
    out: list[dict[str, str]] = []
    pending: list[str] = []
    for m in messages:
        if m["role"] == "system":
            pending.append(m["content"])
        elif m["role"] == "user" and pending:
            out.append({**m, "content": "\n\n".join(pending + [m["content"]])})
            pending = []
        else:
            out.append(m)
    if pending:
        out.append({"role": "user", "content": "\n\n".join(pending)})
    return out


def chat_format(tokenizer: Any) -> dict[str, Any]:
    """The format prompts are rendered in, for cache keys and shard metadata: the chat template's sha256 (with the
    template options and ``system: folded`` where they apply), or ``plain`` for a tokenizer without one."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates
        template = "\n".join(f"{k}\n{v}" for k, v in sorted(template.items()))
    if template:
        fmt: dict[str, Any] = {
            "format": "template",
            "sha256": hashlib.sha256(str(template).encode()).hexdigest()[:16],
            "special_tokens": "as_text",
        }
        if chat_options(tokenizer):
            fmt["options"] = json.loads(json.dumps(chat_options(tokenizer), sort_keys=True, default=str))
        if folds_system(tokenizer):
            fmt["system"] = "folded"
        return fmt
    return {"format": "plain", "prefix": special_prefix(tokenizer), "special_tokens": "as_text"}


def render_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> tuple[list[int], bool]:
    """Token ids of ``messages`` in the chat template, and whether some content spelled a special token (kept as
    text). Without such text the template is rendered and tokenised as one string, as always. A template that
    rejects the system role gets system prompts folded into the user turn (:func:`folds_system`)."""
    if any(m["role"] == "system" for m in messages) and folds_system(tokenizer):
        messages = fold_system(messages)
    contents = [m["content"] for m in messages]
    if not has_special_text(tokenizer, *contents):
        return _ids(tokenizer, _render(tokenizer, messages, generation_prompt)), False
    marked = [{**m, "content": _MARK.format(i)} for i, m in enumerate(messages)]
    text = _render(tokenizer, marked, generation_prompt)
    pieces = _MARKS.split(text)
    if [int(i) for i in pieces[1::2]] != list(range(len(messages))):
        raise ChatFormatError(
            "the chat template changes message content, so text that spells a special token "
            "cannot be kept as text (fix: remove special-token text from the prompts, or set "
            "checks.special_tokens: refuse to list them at start-up)"
        )
    ids: list[int] = []
    for j, piece in enumerate(pieces):
        ids += _ids(tokenizer, contents[int(piece)], as_text=True) if j % 2 else _ids(tokenizer, piece)
    return ids, True


def prompt_ids(tokenizer: Any, prompt: str, system: str | None) -> tuple[list[int], bool]:
    """:func:`prompt_token_ids` and whether the prompt or system prompt spelled a special token (kept as text)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return render_ids(tokenizer, messages, generation_prompt=True)
    # base models without a template: the plain format (PLAIN_FORMAT), after the tokenizer's own prefix (its BOS)
    prefix = special_prefix(tokenizer)
    special = has_special_text(tokenizer, prompt, system)
    if not special:
        return prefix + _ids(tokenizer, (f"{system}\n\n" if system else "") + prompt + "\n"), False
    ids = (_ids(tokenizer, system, True) + _ids(tokenizer, "\n\n") if system else []) + _ids(tokenizer, prompt, True)
    return prefix + ids + _ids(tokenizer, "\n"), True


PLAIN_FORMAT = (
    "the tokenizer's own prefix (its BOS, if it adds one), then: system prompt, a blank line, prompt, newline"
)
"""How a prompt is given to a model whose tokenizer has no chat template (a base model)."""


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text of its own accord (usually its BOS; none for many tokenizers):
    what a base model saw at the start of every training document, kept in the plain format."""
    cached = getattr(tokenizer, "_traitscope_prefix", None)
    if cached is not None:
        return list(cached)
    bare = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("x", add_special_tokens=True)["input_ids"])
    starts = [i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare]
    prefix = full[: starts[0]] if starts else []
    try:
        tokenizer._traitscope_prefix = tuple(prefix)
    except AttributeError:
        pass
    return prefix


def prompt_token_ids(tokenizer: Any, prompt: str, system: str | None) -> list[int]:
    """Token ids of the prompt in the model's chat template, ending with the assistant header."""
    return prompt_ids(tokenizer, prompt, system)[0]


def text_token_ids(tokenizer: Any, text: Any) -> list[int]:
    """Token ids of an assistant-turn text; missing values (None, NaN, "") give no tokens. Special-token text stays
    text."""
    return _ids(tokenizer, text, as_text=has_special_text(tokenizer, text)) if isinstance(text, str) else []


@dataclass
class Encoded:
    prompt: list[int]
    prefill: list[int]
    response: list[int]
    truncated: bool = False
    special_text: bool = False  # some text spelled a special token and was kept as text


def encode_rows(tokenizer: Any, df: pd.DataFrame, max_length: int) -> list[Encoded]:
    out = []
    for row in df.to_dict(orient="records"):
        system = row["system"] if isinstance(row["system"], str) else None
        p, special = prompt_ids(tokenizer, row["prompt"], system)
        truncated = len(p) > max_length
        if truncated:  # keep the end: the assistant header and the question's last tokens
            p = p[-max_length:]
        special = special or has_special_text(tokenizer, row["prefill"], row["response"])
        out.append(
            Encoded(
                p,
                text_token_ids(tokenizer, row["prefill"]),
                text_token_ids(tokenizer, row["response"]),
                truncated,
                special,
            )
        )
    return out


TEXT_COLUMNS = ("prompt", "system", "prefill", "response")
"""The columns of a prompt table whose text the model is given."""


def token_texts(tokenizer: Any, ids: Iterable[int]) -> list[str]:
    """The text of each token of one sequence, as a reader should see it: a character that spans several tokens
    (byte-level BPE splits multibyte UTF-8: accents, CJK, emoji) is given whole to the token that completes it and
    the tokens before it read ``""``, instead of each decoding alone to U+FFFD. Every other token is
    ``tokenizer.decode([id])``, as before.

    >>> from transformers import AutoTokenizer  # doctest: +SKIP
    >>> token_texts(AutoTokenizer.from_pretrained("gpt2"), [12520, 236, 231])  # doctest: +SKIP
    ['', '', ' 🎉']
    """
    out: list[str] = []
    pending: list[int] = []
    for i in ids:
        pending.append(int(i))
        text = tokenizer.decode(pending)
        if text.endswith("\ufffd") and len(pending) < 8:  # an incomplete character: wait for its last byte
            out.append("")
            continue
        out.append(text)
        pending = []
    if pending:  # the sequence ends inside a character: what there is, as the tokenizer decodes it
        out[-1] = tokenizer.decode(pending)
    return out


def special_text_hits(
    df: pd.DataFrame, specials: Iterable[str], columns: Iterable[str] = TEXT_COLUMNS
) -> Iterator[tuple[str, str, pd.Series]]:
    """(column, special token, mask of the rows whose column spells it) for every pair that occurs in ``df``,
    columns first, then tokens in the order given."""
    specials = list(specials)
    for c in (c for c in columns if c in df.columns):
        text = df[c].where(df[c].map(lambda v: isinstance(v, str)), "")
        for s in specials:
            hit = text.str.contains(s, regex=False)
            if hit.any():
                yield c, s, hit


def special_text_rows(tokenizer: Any, df: pd.DataFrame, columns: Iterable[str] = TEXT_COLUMNS) -> list[str]:
    """Ids of the rows whose text spells one of the tokenizer's special tokens."""
    hit = pd.Series(False, index=df.index)
    for _, _, rows in special_text_hits(df, special_texts(tokenizer), columns):
        hit |= rows
    return df.loc[hit, "id"].astype(str).tolist()


def folder_has_template(folder: str | Path) -> bool | None:
    """Whether a model folder's tokenizer files hold a chat template (``chat_template.jinja``/``.json``, or
    ``chat_template`` in ``tokenizer_config.json``); None when the folder has no tokenizer config to tell."""
    root = Path(folder).expanduser()
    if (root / "chat_template.jinja").is_file() or (root / "chat_template.json").is_file():
        return True
    conf = root / "tokenizer_config.json"
    if not conf.is_file():
        return None
    try:
        return bool(json.loads(conf.read_text(encoding="utf-8")).get("chat_template"))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def file_special_tokens(folder: str | Path) -> set[str] | None:
    """The special-token strings a model folder's tokenizer files declare (``tokenizer.json`` added tokens marked
    special, ``tokenizer_config.json``'s ``added_tokens_decoder`` and named special tokens), without loading the
    tokenizer; None when the folder has neither file."""
    root = Path(folder).expanduser()
    found: set[str] = set()
    seen = False
    tok, conf = root / "tokenizer.json", root / "tokenizer_config.json"
    if tok.is_file():
        seen = True
        data = json.loads(tok.read_text(encoding="utf-8"))
        found |= {str(t["content"]) for t in data.get("added_tokens") or [] if t.get("special")}
    if conf.is_file():
        seen = True
        data = json.loads(conf.read_text(encoding="utf-8"))
        found |= {str(t["content"]) for t in (data.get("added_tokens_decoder") or {}).values() if t.get("special")}
        for name in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
            value = data.get(name)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and value:
                found.add(value)
    return found if seen else None


def gguf_special_tokens(path: str | Path) -> set[str]:
    """The control tokens of a GGUF file's vocabulary (token type 3)."""
    from traitscope.core.gguf_meta import read_gguf

    fields = read_gguf(path).fields
    words, kinds = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    return {w for w, k in zip(words, kinds) if k == 3}
