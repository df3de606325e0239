"""Cumulative text in, whole-character deltas out: shared by the streaming wrappers of the served
TensorRT-LLM models (bls_stream.py for the engine runtime's BLS model, llmapi_stream.py for the
LLM API model). Standard library only; it sits next to the model.py that imports it (Triton puts the
model's version directory on sys.path).
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class DeltaText:
    """Cumulative decodes of one sequence in, the new complete text of each out."""

    def __init__(self) -> None:
        self.sent = ""
        self.latest = ""

    def push(self, cumulative: str) -> str:
        self.latest = cumulative
        stable = cumulative.rstrip(REPLACEMENT)  # an incomplete trailing character decodes to U+FFFD
        if len(stable) <= len(self.sent):
            return ""
        # Byte-level BPE decodes are prefix-stable, so this is exactly the new text. (A tokenizer
        # whose decode rewrote earlier text could not take back what was sent: best effort.)
        delta = stable[len(self.sent) :]
        self.sent = stable
        return delta

    @property
    def pending(self) -> bool:
        """Whether text is held back (the latest decode ends in an incomplete character)."""
        return len(self.latest) > len(self.sent)

    def flush(self) -> str:
        """At the end of the generation: what was held back (a genuinely incomplete character)."""
        rest = self.latest[len(self.sent) :]
        self.sent = self.latest if len(self.latest) > len(self.sent) else self.sent
        return rest
