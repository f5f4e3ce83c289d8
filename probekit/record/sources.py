"""Where a user's checkpoints come from, how each one is loaded again, and its content hash.

Four sources (docs/record.md, "Checkpoint sources"):

- a Hugging Face ``Trainer`` output directory: its ``checkpoint-N`` subfolders, the step from
  ``trainer_state.json``'s ``global_step`` (else N), loaded with ``from_pretrained`` of a class
  chosen from the loss (causal LM: ``AutoModelForCausalLM``; classification and regression:
  ``AutoModelForSequenceClassification``) or named with ``model_class="module:Name"``;
- model directories (paths or globs), the step from the last number in each name or ``steps``;
- state-dict files (``*.pt``, ``*.pth``, ``*.bin``, ``*.safetensors``) with a model factory
  ``"module:function"`` (called with no arguments, returns an ``nn.Module``; loaded strictly);
- models in memory: any iterable of ``(step, model)`` pairs (Python API only).

A checkpoint's content hash is the sha256 of its files (sorted relative paths, sizes and bytes;
the trainer's own state beside the weights is left out: it does not change what the model
computes), or, for a model in memory, of its state dict's tensors (name, dtype, shape, bytes).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from probekit.errors import ProbekitUsageError
from probekit.record.user_code import code_identity, import_object

__all__ = ["Checkpoint", "Loader", "find_checkpoints", "from_models", "hash_path", "hash_state_dict",
           "import_object"]

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# What a Trainer saves beside the weights: optimizer, scheduler, RNG and trainer state, the
# monitor's state (probekit.monitor.hf), DeepSpeed's optimizer shards (global_stepN/).
_TRAINER_STATE = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|trainer_state\.json|training_args\.bin|"
                            r"rng_state.*\.pth|probekit_monitor\.pt|global_step\d+|latest|zero_to_fp32\.py)$")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
DEFAULT_MODEL_CLASS = {"causal_lm": "transformers:AutoModelForCausalLM",
                       "classification": "transformers:AutoModelForSequenceClassification",
                       "regression": "transformers:AutoModelForSequenceClassification"}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Loader:
    """How checkpoints of one source are turned into a model: ``kind`` "hf", "state_dict" or "memory"."""

    kind: str
    model_class: str | None = None  # "module:Name" with from_pretrained ("hf")
    factory: str | None = None  # "module:function" or "/abs/path/file.py:function" ("state_dict")
    dtype: str | None = "float32"  # the dtype the weights are loaded in (None: as they are, "memory")
    code: str | None = None  # sha256 of the file defining the factory or model class: an edit is a new recording

    def describe(self) -> dict:
        return {"kind": self.kind, "model_class": self.model_class, "factory": self.factory, "dtype": self.dtype,
                "code": self.code}

    @classmethod
    def from_dict(cls, data: dict) -> "Loader":
        return cls(data["kind"], data.get("model_class"), data.get("factory"), data.get("dtype"), data.get("code"))


@dataclass
class Checkpoint:
    """One checkpoint of the run: its step, where it is, how to load it, and (lazily) its content hash."""

    step: int
    path: Path | None
    loader: Loader
    model: Any = field(default=None, repr=False)  # a model in memory ("memory")
    _sha: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"step {self.step} ({self.path})" if self.path is not None else f"step {self.step} (in memory)"

    def sha256(self) -> str:
        if self._sha is None:
            self._sha = hash_path(self.path) if self.path is not None else hash_state_dict(self.model.state_dict())
        return self._sha

    def describe(self) -> dict:
        return {"step": int(self.step), "path": None if self.path is None else str(self.path), "sha256": self.sha256()}

    def load(self, device: Any = "cpu") -> Any:
        """The model with this checkpoint's weights on ``device``; a failure is one line naming the checkpoint."""
        try:
            model = load_model(self.path, self.loader) if self.model is None else self.model
            return model.to(device)
        except ProbekitUsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported the same way
            first = (str(exc).strip().splitlines() or [""])[0]
            if "Weights only load failed" in first:  # torch's advice to load unsafely does not apply to a bad file
                first = "not a tensor file torch.load can read safely (weights_only=True); is it truncated or another format?"
            raise ProbekitUsageError(f"checkpoint {self.label} failed to load: {type(exc).__name__}: {first}") from exc


# -- hashing ---------------------------------------------------------------------------------
def _model_files(path: Path) -> list[Path]:
    """The files of a checkpoint directory that define the model (the trainer's own state left out)."""
    out = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if p.is_file() and not any(_TRAINER_STATE.match(part) for part in rel):
            out.append(p)
    return out


def hash_path(path: Path) -> str:
    """sha256 of a checkpoint file (its bytes) or directory (sorted relative paths, sizes and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else _model_files(path)
    for f in files:
        if path.is_dir():
            digest.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def feed_tensor(digest: Any, name: str, value: Any) -> None:
    """Add one named value to a hash: a tensor's dtype, shape and bytes (any dtype, bf16 included), else its repr."""
    import torch

    if not isinstance(value, torch.Tensor):
        digest.update(f"{name}\0{value!r}\0".encode())
        return
    t = value.detach().to("cpu").contiguous()
    digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def hash_state_dict(state: dict) -> str:
    """sha256 of a state dict's tensors: name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        feed_tensor(digest, name, state[name])
    return digest.hexdigest()


# -- loading ---------------------------------------------------------------------------------
def torch_dtype(name: str | None) -> Any:
    import torch

    return None if name is None else getattr(torch, DTYPES[name])


def read_state_dict(path: Path) -> dict:
    """The tensors of a state-dict file; ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers unwrapped."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ProbekitUsageError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return state


def load_model(path: Path, loader: Loader) -> Any:
    """A fresh model with the weights at ``path``, in eval mode, on the CPU."""
    import torch

    dtype = torch_dtype(loader.dtype)
    if loader.kind == "hf":
        import transformers
        from packaging.version import Version

        from transformers.utils import logging as hf_logging

        cls = import_object(loader.model_class, "--model-class")
        # transformers >= 4.56 names it dtype (torch_dtype is deprecated); from v5 the default is "auto"
        key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar, even off a terminal, once per checkpoint
        try:
            return cls.from_pretrained(str(path), local_files_only=True, **{key: dtype}).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
    if loader.kind == "state_dict":
        model = import_object(loader.factory, "--model-factory")()
        if not isinstance(model, torch.nn.Module):
            raise ProbekitUsageError(f"--model-factory {loader.factory!r} must return a torch.nn.Module; "
                                     f"got {type(model).__name__}.")
        model.load_state_dict(read_state_dict(path), strict=True)
        return model.to(dtype).eval()
    raise ProbekitUsageError(f"checkpoint {path}: no loader of kind {loader.kind!r} (hf, state_dict).")


# -- finding checkpoints -----------------------------------------------------------------------
def _expand(item: str | os.PathLike) -> tuple[list[Path], str]:
    """Paths an item names (a glob is expanded, sorted) and where it looked, for messages."""
    text = os.fspath(item)
    if glob.has_magic(text):
        hits = [Path(p) for p in sorted(glob.glob(os.path.expanduser(text)))]
        if not hits:
            raise ProbekitUsageError(f"no checkpoints found: the pattern {text!r} matches nothing "
                                     f"(looked in {Path(text).parent.resolve()}).")
        return hits, f"the pattern {text!r}"
    path = Path(text).expanduser()
    if not path.exists():
        raise ProbekitUsageError(f"no checkpoints found: {path} does not exist.")
    return [path], str(path)


def _kind(path: Path) -> str | None:
    if path.is_file():
        return "state_dict" if path.name.endswith(STATE_DICT_SUFFIXES) else None
    if (path / "config.json").is_file():
        return "hf"
    return None


def _trainer_step(path: Path) -> int:
    state = path / "trainer_state.json"
    if state.is_file():
        try:
            return int(json.loads(state.read_text())["global_step"])
        except (ValueError, KeyError, TypeError):
            pass
    return int(_CHECKPOINT_DIR.match(path.name).group(1))


#: A number the name says is a step (``step=20``, ``global_step_20``, ``iter-20``, ``checkpoint-20``): it wins
#: over the name's other numbers (``step=20-val_loss=0.50.pt`` is step 20, not 50).
_NAMED_STEP = re.compile(r"(?:global_step|step|iter|iteration|checkpoint|ckpt)[=_-]?(\d+)", re.IGNORECASE)


def _step_from_name(path: Path) -> int:
    stem = path.name[: -len(path.suffix)] if path.is_file() and path.suffix else path.name
    named = _NAMED_STEP.findall(stem)
    if named:
        return int(named[-1])
    numbers = re.findall(r"\d+", stem)
    if not numbers:
        raise ProbekitUsageError(f"cannot read a step from the name {path.name!r} (no number in it); "
                                 "give the steps with --steps.")
    return int(numbers[-1])


def _natural(path: Path) -> list:
    """Sort key: the path's numbers compared as numbers (``step20`` before ``step100``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_checkpoints(sources: str | os.PathLike | Sequence[str | os.PathLike], *, steps: Sequence[int] | None = None,
                     loss: str = "causal_lm", model_class: str | None = None, model_factory: str | None = None,
                     dtype: str = "float32") -> list[Checkpoint]:
    """The checkpoints ``sources`` name, sorted by step (see the module docstring for the sources)."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise ProbekitUsageError("no checkpoints found: no --checkpoints were given.")
    if dtype not in DTYPES:
        raise ProbekitUsageError(f"--dtype must be one of float32, bfloat16, float16; got {dtype!r}.")
    found: list[tuple[Path, str]] = []  # (path, kind)
    trainer = False
    for item in items:
        paths, where = _expand(item)
        hits: list[tuple[Path, str]] = []
        for path in paths:
            # a Trainer output first (its final model may sit at the top: the checkpoints are below)
            subs = sorted(p for p in path.iterdir() if p.is_dir() and _CHECKPOINT_DIR.match(p.name)
                          and _kind(p) == "hf") if path.is_dir() else []
            trainer = trainer or bool(subs)
            kind = None if subs else _kind(path)
            if subs:
                hits += [(p.resolve(), "hf") for p in subs]
            elif kind is not None:
                hits.append((path.resolve(), kind))
            elif path.is_dir():  # a folder of state-dict files
                hits += [(p.resolve(), "state_dict") for p in sorted(path.iterdir()) if _kind(p) == "state_dict"]
        if not hits:
            raise ProbekitUsageError(
                f"no checkpoints found in {where}: looked for checkpoint-N subfolders and model directories "
                f"(with a config.json) and state-dict files ({', '.join('*' + s for s in STATE_DICT_SUFFIXES)}).")
        found += hits
    kinds = {k for _, k in found}
    if len(kinds) > 1:
        raise ProbekitUsageError("--checkpoints mixes model directories and state-dict files; "
                                 "record one kind at a time.")
    kind = kinds.pop()
    if kind == "state_dict":
        if not model_factory:
            raise ProbekitUsageError("state-dict files need --model-factory MODULE:FUNCTION (a function that builds "
                                     "the model with no arguments).")
        factory, code = code_identity(str(model_factory))
        loader = Loader("state_dict", factory=factory, dtype=DTYPES[dtype], code=code)
    else:
        cls = model_class or DEFAULT_MODEL_CLASS.get(loss)
        if cls is None:
            raise ProbekitUsageError(f"a custom --loss {loss!r} with model directories needs --model-class MODULE:NAME "
                                     "(the class whose from_pretrained loads them).")
        model_cls, code = code_identity(str(cls))
        loader = Loader("hf", model_class=model_cls, dtype=DTYPES[dtype], code=code if model_class else None)
    paths = sorted(dict.fromkeys(p for p, _ in found), key=_natural)  # --steps pair with them in this order
    if steps is not None:
        if len(steps) != len(paths):
            raise ProbekitUsageError(f"--steps gives {len(steps)} steps for {len(paths)} checkpoints; "
                                     "give one per checkpoint.")
        numbered = [int(s) for s in steps]
    else:
        numbered = [_trainer_step(p) if trainer and _CHECKPOINT_DIR.match(p.name) else _step_from_name(p)
                    for p in paths]
    return _sorted_unique([Checkpoint(s, p, loader) for s, p in zip(numbered, paths)])


def _sorted_unique(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    by_step: dict[int, Checkpoint] = {}
    for c in checkpoints:
        if c.step < 0:
            raise ProbekitUsageError(f"checkpoint {c.label}: steps must be >= 0.")
        if c.step in by_step:
            raise ProbekitUsageError(f"two checkpoints have step {c.step}: {by_step[c.step].label} and {c.label}; "
                                     "give the steps with --steps.")
        by_step[c.step] = c
    return [by_step[s] for s in sorted(by_step)]


def from_models(pairs: Iterable[tuple[int, Any]]) -> Iterator[Checkpoint]:
    """Checkpoints of ``(step, model)`` pairs in memory, lazily (steps must increase)."""
    last = None
    for item in pairs:
        try:
            step, model = item
        except (TypeError, ValueError):
            raise ProbekitUsageError(f"models in memory must come as (step, model) pairs; got {item!r}.") from None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ProbekitUsageError(f"a step must be an int >= 0; got {step!r}.")
        if last is not None and step <= last:
            raise ProbekitUsageError(f"steps must increase: step {step} follows step {last}.")
        if not hasattr(model, "state_dict"):
            raise ProbekitUsageError(f"step {step}: the model must be a torch.nn.Module; got {type(model).__name__}.")
        last = step
        yield Checkpoint(int(step), None, Loader("memory", dtype=None), model=model)
