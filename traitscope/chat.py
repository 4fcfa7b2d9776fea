"""Chat tokenisation: a prompt in the model's chat template, and the assistant turn that follows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


def prompt_token_ids(tokenizer: Any, prompt: str, system: str | None) -> list[int]:
    """Token ids of the prompt in the model's chat template, ending with the assistant header."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:  # base models without a template: plain text, system prompt first
        text = (f"{system}\n\n" if system else "") + prompt + "\n"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_token_ids(tokenizer: Any, text: Any) -> list[int]:
    """Token ids of an assistant-turn text; missing values (None, NaN, "") give no tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if isinstance(text, str) and text else []


@dataclass
class Encoded:
    prompt: list[int]
    prefill: list[int]
    response: list[int]
    truncated: bool = False


def encode_rows(tokenizer: Any, df: pd.DataFrame, max_length: int) -> list[Encoded]:
    out = []
    for row in df.to_dict(orient="records"):
        system = row["system"] if isinstance(row["system"], str) else None
        p = prompt_token_ids(tokenizer, row["prompt"], system)
        truncated = len(p) > max_length
        if truncated:  # keep the end: the assistant header and the question's last tokens
            p = p[-max_length:]
        out.append(Encoded(p, text_token_ids(tokenizer, row["prefill"]), text_token_ids(tokenizer, row["response"]),
                           truncated))
    return out
