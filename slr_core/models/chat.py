"""Chat formatting: the tokenizer's own template, or a built-in one for known families."""

from __future__ import annotations

from slr_core.errors import PromptSetError

# Gemma 3's turn format (as in google/gemma-3-*-it), without the image handling.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{% if role == 'system' %}{% set role = 'user' %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Families whose base checkpoints ship without a template but whose instruct format is known.
BUILTIN_TEMPLATES = {"gemma3": GEMMA3_CHAT_TEMPLATE, "gemma3_text": GEMMA3_CHAT_TEMPLATE}


def ensure_chat_template(tokenizer, model_type: str) -> None:
    """Give `tokenizer` a chat template if it has none and its family has a built-in one."""
    if getattr(tokenizer, "chat_template", None):
        return
    template = BUILTIN_TEMPLATES.get(model_type)
    if template is None:
        raise PromptSetError(
            f"The tokenizer has no chat template and SLR Explorer has no built-in one for "
            f"model_type '{model_type}'. Use a tokenizer with a chat template (the post-trained "
            f"model's), or add one to its tokenizer_config.json."
        )
    tokenizer.chat_template = template


def format_chat(tokenizer, instruction: str) -> str:
    """The single-turn chat text for `instruction`, ending where the model's reply starts."""
    messages = [{"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_chat(tokenizer, instruction: str) -> list[int]:
    """Token ids of the chat-formatted instruction; the template already carries BOS."""
    text = format_chat(tokenizer, instruction)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def end_of_turn_ids(tokenizer) -> list[int]:
    """E: the eos token and the chat template's end-of-turn marker (e.g. <end_of_turn>, <|im_end|>)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    # The marker is whatever the template writes right after an assistant reply's content.
    marker = "SLRREPLYEND"
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    after = text[text.rindex(marker) + len(marker) :] if marker in text else ""
    following = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    if following and following[0] in set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder):
        ids.add(following[0])
    if not ids:
        raise PromptSetError(
            "The tokenizer has no eos token and its chat template writes no end-of-turn token: "
            "strict CRC cannot tell when a reply ends. Use the post-trained model's tokenizer."
        )
    return sorted(ids)
