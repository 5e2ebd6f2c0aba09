"""The evaluation settings, in a module of their own: tasks (code tasks read the sandbox limits)
and the runner share them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from colakit.evaluate.sandbox import SandboxLimits


@dataclass
class EvalConfig:
    """Everything besides model and tasks that decides the numbers (recorded in results.json).

    Its fields, in this order, are part of every checkpoint's fingerprint."""

    seed: int = 0
    token_budget: int = 2048  # padded tokens per log-likelihood forward (bounds the logits' memory)
    gen_batch_size: int = 8
    max_new_tokens: int | None = None  # None: each task's own cap
    chat: bool = False  # prompts through the tokenizer's chat template, for tasks that have a chat format
    ppl_seq_len: int = 1024
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    sandbox_workers: int = 2
