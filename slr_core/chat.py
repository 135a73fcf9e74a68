"""Chat formatting: the tokenizer's own template, or a built-in one for known families."""

from __future__ import annotations

from .errors import PromptSetError

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
