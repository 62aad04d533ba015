"""A chat prompt starts with the BOS its template writes, once: the rendered text is tokenized
without the tokenizer's own special tokens (as HF's apply_chat_template), on Llama 3's real
tokenizer, whose post-processor would add another."""

from compiler.tokenizer_import import read_tokenizer
from runtime.tokenizer import Tokenizer
from server.chat_template import ChatTemplate
from server.protocol import parse_chat
from tests import tokenizer_files

LLAMA3_STYLE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                "{{ m['content'] }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_chat_prompt_has_one_bos(tmp_path):
    tokenizer = Tokenizer(read_tokenizer(tokenizer_files.checkpoint_files("llama3", tmp_path)))
    bos = tokenizer.bos_token_id
    assert bos is not None and tokenizer.encode("hi")[0] == bos  # the post-processor adds one
    plan = {"limits": {"max_seq": 256, "max_batch": 1}, "model": {"config": {"vocab_size": 128256}}}
    template = ChatTemplate(LLAMA3_STYLE, "<|begin_of_text|>", "<|eot_id|>")
    job = parse_chat({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}, plan, "m",
                     tokenizer, template)
    assert job.prompt[0] == bos and job.prompt.count(bos) == 1
    assert tokenizer.decode(job.prompt).startswith("<|begin_of_text|><|start_header_id|>user")
