"""The unlearning-method extension point: typed configs, one small base class, its registry."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn

ERR_FIELD = "{field} must be {rule}, got {value!r}"
ERR_FIELD_TYPE = "{field} expects {type}, got {value!r}"
ERR_UNKNOWN_FIELD = "unknown hyper-parameter {field!r} for method {method!r}; valid: {valid}"
ERR_UNKNOWN_METHOD = "unknown unlearning method {name!r}; known: {known}"
ERR_METHOD_NAME = "method names are lower-case and non-empty, got {name!r}"
ERR_DUPLICATE = "unlearning method {name!r} is already registered"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def require(ok: bool, field: str, value: object, rule: str) -> None:
    """Raise the ValueError that names `field` and its bad `value` unless `ok`."""
    if not ok:
        raise ValueError(ERR_FIELD.format(field=field, rule=rule, value=value))


@dataclass(frozen=True)
class UnlearnConfig:
    """Hyper-parameters every method shares; subclasses add their own and extend `validate`.

    `retain_batch_size`: retain rows per step (None: `batch_size`). The retain set is many
    times the forget set; a step that draws more of it keeps more of the model in place.
    `general_retain`: how many of those rows come from the shipped general set (short
    questions and open instructions) rather than from all retain rows alike. Among thousands
    of rows about other people the general ones are drawn a few times a run, and an edit
    that teaches a refusal learnt to refuse "How do I make apple juice?" too.
    """

    lr: float = 5e-4
    steps: int = 20
    batch_size: int = 4
    retain_batch_size: int | None = None
    general_retain: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16
    seed: int = 0
    max_length: int = 128

    def validate(self) -> None:
        require(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a finite number > 0")
        for name in ("steps", "batch_size", "lora_rank", "lora_alpha", "max_length"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        retain = self.retain_batch_size
        require(
            retain is None or retain >= 1, "retain_batch_size", retain, "None or an integer >= 1"
        )
        retain = self.batch_size if retain is None else retain
        general = self.general_retain
        rule = f"an integer from 0 to the retain rows a step draws ({retain})"
        require(0 <= general <= retain, "general_retain", general, rule)
        require(self.seed >= 0, "seed", self.seed, "an integer >= 0")


@dataclass(frozen=True)
class GoodAnswerConfig(UnlearnConfig):
    """For methods that teach one answer to every forget question (FLAT, IdkNLL)."""

    good_answer: str = "I don't know."

    def validate(self) -> None:
        super().validate()
        require(bool(self.good_answer.strip()), "good_answer", self.good_answer, "non-empty")


@dataclass(frozen=True)
class Tokens:
    """A right-padded batch; `labels` is -100 on prompt and padding positions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """One training step's rows: forget answers, retain answers, and for FLAT the forget
    prompts answered with the method's good answer (`good`, None for other methods)."""

    forget: Tokens
    retain: Tokens
    good: Tokens | None = None


class UnlearningMethod(ABC):
    """Turns a batch into a loss; `step` applies it (methods that edit gradients override it).

    Methods that need the frozen base model switch the LoRA adapter off
    (`with torch.no_grad(), model.disable_adapter():`) rather than holding a second copy.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[UnlearnConfig]] = UnlearnConfig
    # A training-free method overrides `edit`, which the trainer calls instead of `step`.
    training_free: ClassVar[bool] = False

    def __init__(self, config: UnlearnConfig | None = None):
        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} takes a {self.config_cls.__name__}")
        config.validate()
        self.config = config

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> UnlearningMethod:
        return cls(make_config(cls.config_cls, overrides, cls.name))

    @property
    def good_answer(self) -> str | None:
        """The answer the data builder pairs with every forget prompt, if the method uses one."""
        return None

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...

    def step(
        self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """One optimizer step; returns the step's logs, `loss` included."""
        optimizer.zero_grad(set_to_none=True)
        loss, logs = self.loss(model, batch)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **logs}

    def edit(self, model: nn.Module, data: Any) -> dict[str, float]:
        """Training-free methods: set the adapter's weights from `data` in one go."""
        raise NotImplementedError(f"{self.name} trains; it has no one-shot edit")


class TeachesGoodAnswer:
    """Mixin for methods on a `GoodAnswerConfig`: the data builder pairs every forget question
    with the configured answer, which such a method reads as `batch.good`."""

    name: ClassVar[str]
    config: GoodAnswerConfig

    @property
    def good_answer(self) -> str | None:
        return self.config.good_answer

    def good_rows(self, batch: Batch) -> Tokens:
        if batch.good is None:
            raise ValueError(
                f"{self.name} needs batch.good: forget prompts answered with the good answer"
            )
        return batch.good


def _convert(field: str, value: Any, hint: Any) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    is_none = value is None or (isinstance(value, str) and value.lower() in {"none", "null"})
    if is_none and type(None) in options:
        return None
    for kind in (k for k in options if k is not type(None)):
        if isinstance(value, str) and kind is not str:
            text = value.strip().lower()
            if kind is bool:
                if text in _TRUE | _FALSE:
                    return text in _TRUE
                continue
            try:
                return kind(text)
            except ValueError:
                continue
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    names = " | ".join(getattr(k, "__name__", str(k)) for k in options)
    raise ValueError(ERR_FIELD_TYPE.format(field=field, type=names, value=value))


def make_config(
    config_cls: type[UnlearnConfig], overrides: Mapping[str, Any], method: str = ""
) -> UnlearnConfig:
    """Build and validate a config from `overrides` (typed values or strings from a CLI).

    Args:
        config_cls: the method's config dataclass.
        overrides: field name -> value; strings are converted to the field's type.
        method: the method's name, for the error message on an unknown field.
    """
    hints = typing.get_type_hints(config_cls)
    valid = [f.name for f in dataclasses.fields(config_cls)]
    for key in overrides:
        if key not in valid:
            raise ValueError(
                ERR_UNKNOWN_FIELD.format(field=key, method=method, valid=", ".join(valid))
            )
    config = config_cls(**{k: _convert(k, v, hints[k]) for k, v in overrides.items()})
    config.validate()
    return config


_REGISTRY: dict[str, type[UnlearningMethod]] = {}


def register_method(name: str, config_cls: type[UnlearnConfig]):
    """Class decorator: make a method available under `name` (lower-case, unique)."""
    if not (isinstance(config_cls, type) and issubclass(config_cls, UnlearnConfig)):
        raise TypeError(f"config_cls must subclass UnlearnConfig, got {config_cls!r}")

    def wrap(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
        if not name or name != name.lower() or name != name.strip():
            raise ValueError(ERR_METHOD_NAME.format(name=name))
        if name in _REGISTRY:
            raise ValueError(ERR_DUPLICATE.format(name=name))
        cls.name = name
        cls.config_cls = config_cls
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[UnlearningMethod]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(ERR_UNKNOWN_METHOD.format(name=name, known=method_names())) from None


def method_names() -> list[str]:
    return sorted(_REGISTRY)
