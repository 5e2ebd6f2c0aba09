"""Tiny random-weight decoders of every supported family (built in well under a second each)."""

from __future__ import annotations

import torch

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2", "opt")


def tiny_config(family: str, vocab: int = 256, hidden: int = 64, layers: int = 2):
    import transformers as tf

    common = dict(vocab_size=vocab, num_hidden_layers=layers, max_position_embeddings=256)
    if family in ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"):
        cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
               "qwen3": tf.Qwen3Config, "gemma2": tf.Gemma2Config, "gemma3": tf.Gemma3TextConfig,
               "phi3": tf.Phi3Config}[family]
        kw = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
                  num_key_value_heads=2, **common)
        if family in ("gemma2", "gemma3", "qwen3"):
            kw["head_dim"] = hidden // 4
        if family == "phi3":
            kw["pad_token_id"] = 0
        return cls(**kw)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=256)
    if family == "opt":
        return tf.OPTConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, ffn_dim=hidden * 2,
                            num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=hidden)
    raise ValueError(family)


def tiny_model(family: str = "llama", seed: int = 0, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **kw), dtype=torch.float32)
    return model.eval()


def tiny_tokenizer(vocab: int = 256, add_bos: bool = False):
    """A real byte-level BPE tokenizer trained in memory on a few sentences (vocab <= ``vocab``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n",
              "Question: What is 2 + 3? Answer: 5.", "Calibration data decides what survives compression."] * 20
    tok.train_from_iterator(corpus, trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    return fast
