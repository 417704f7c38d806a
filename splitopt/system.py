"""Devices, the edge server, the shared wireless channel and training settings.

These are frozen pydantic models: validated once at the boundary (a YAML/JSON file or Python
keywords), immutable afterwards. Units are SI and explicit in the field names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from splitopt import limits
from splitopt.errors import MISSING, InputError, ScenarioError

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def scenario_error(err: ValidationError, where: str, model: type[BaseModel]) -> ScenarioError:
    """Pydantic's first error as a :class:`ScenarioError` naming field, value and what is allowed.

    ``where`` prefixes pydantic's location (``devices[2]`` + ``flops``). Errors raised by our own
    validators as :class:`InputError` keep their wording. The returned error's ``loc`` attribute
    holds the field relative to ``where``, so that an error raised by a nested constructor is
    re-rooted, not prefixed twice.
    """
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    loc = ".".join(str(p) for p in first["loc"])
    if isinstance(cause, InputError):
        rel = getattr(cause, "loc", cause.field)
        rel = f"{loc}.{rel}" if loc and rel else (loc or rel)
        out = ScenarioError(f"{where}.{rel}" if rel else where, cause.value, cause.allowed,
                            cause.fix)
    else:
        value, allowed = first.get("input"), _allowed_text(first["msg"])
        if first["type"] == "missing":
            value, allowed = MISSING, "a required field"
        elif first["type"] == "extra_forbidden":
            allowed = f"the fields {', '.join(model.model_fields)} (no others)"
        elif first["type"] in ("model_type", "model_attributes_type", "dict_type"):
            allowed = "an object (mapping) of fields"
        rel = loc
        out = ScenarioError(f"{where}.{loc}" if loc else where, value, allowed,
                            "See docs/formats.md for the scenario fields.")
    out.loc = rel  # type: ignore[attr-defined]
    return out


def number_in(rng: limits.Range) -> Any:
    """A pydantic field type: a strict number in ``rng`` (no ``true``, no ``"2e7"``).

    The error names the range (``a number in [1, 1e+21] (FLOP/s)``); :func:`scenario_error`
    prefixes the field.
    """
    return Annotated[int if rng.integer else float,
                     BeforeValidator(partial(_check_in, rng))]


def _check_in(rng: limits.Range, value: Any) -> Any:
    return limits.check("", value, rng)


def _allowed_text(msg: str) -> str:
    """Pydantic's "Input should be greater than 0" as "greater than 0"."""
    for prefix in ("Input should be ", "Value error, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


class _Frozen(BaseModel):
    """A frozen pydantic model whose constructor raises ScenarioError, not pydantic's error."""

    model_config = _FROZEN

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            name = data.get("name")
            where = type(self).__name__ + (f"({name!r})" if isinstance(name, str) else "")
            raise scenario_error(err, where, type(self)) from None


def spectral_efficiency(snr_db: float) -> float:
    """Shannon spectral efficiency ``log2(1 + 10^(snr_db / 10))`` in bit/s/Hz.

    Computed as a log-sum-exp in base 2 so that a huge SNR gives a large finite number, not an
    overflow; a NaN or infinite SNR is returned as NaN/inf for the caller's validation to reject.
    """
    if not math.isfinite(snr_db):
        return snr_db
    t = snr_db / 10.0 * math.log2(10.0)  # log2 of the linear SNR
    return t + math.log2(1.0 + 2.0 ** -t) if t > 0 else math.log2(1.0 + 2.0 ** t)


class Device(_Frozen):
    """One weak device: a phone, a Jetson, a Raspberry Pi, a microcontroller.

    The channel quality is given as spectral efficiency ``s = log2(1 + SNR)`` in bit/s/Hz, or as
    ``snr_db`` from which it is computed. ``device_class`` keys measured per-node times in a
    LayerGraph; devices with identical figures and class share cut computations.
    """

    model_config = _FROZEN

    name: str = Field(min_length=1)
    flops: number_in(limits.FLOP_RATE) = Field(description="sustained FLOP/s for training")
    memory_bytes: number_in(limits.MEMORY) = Field(default=math.inf, description="for training")
    power_compute_w: number_in(limits.POWER) = 0.0
    power_tx_w: number_in(limits.POWER) = 0.0
    # 0 (the default) means "not given": _check_link then asks for them or for snr_db
    spectral_eff_up: number_in(limits.SPECTRAL_EFF) = 0.0
    spectral_eff_dn: number_in(limits.SPECTRAL_EFF) = 0.0
    snr_db: number_in(limits.SNR_DB) | None = None
    workspace_bytes: number_in(limits.WORKSPACE) = 0.0
    device_class: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_snr(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("snr_db") is not None:
            try:
                s = spectral_efficiency(limits.check("snr_db", data["snr_db"], limits.SNR_DB))
            except InputError:
                return data  # the snr_db field's own validation reports it
            data = {**data}
            data.setdefault("spectral_eff_up", s)
            data.setdefault("spectral_eff_dn", s)
        return data

    @model_validator(mode="after")
    def _check_link(self) -> Device:
        for attr in ("spectral_eff_up", "spectral_eff_dn"):
            if getattr(self, attr) <= 0:
                # InputError is a ValueError: pydantic wraps it, scenario._validated unwraps it
                raise InputError(attr, getattr(self, attr), "a number > 0 (bit/s/Hz)",
                                 "Give spectral_eff_up and spectral_eff_dn, or snr_db.")
        return self

    @property
    def cls(self) -> str:
        """The device class used to look up measured times (defaults to the name)."""
        return self.device_class or self.name

    def signature(self) -> tuple:
        """Everything that prices a cut; devices with equal signatures share one cut computation."""
        return (self.flops, self.memory_bytes, self.power_compute_w, self.power_tx_w,
                self.spectral_eff_up, self.spectral_eff_dn, self.workspace_bytes, self.cls)


class Server(_Frozen):
    """The edge server that runs the server side of every split.

    ``serving`` says how it serves the devices (docs/cost_model.md, "Shared resources"): ``shared``
    (the default: one server for the fleet, its compute divided in shares phi_k, sum <= 1),
    ``sequential`` (one device at a time at full speed: split devices take turns) or
    ``dedicated`` (every device at the server's full speed at once: an explicit choice).
    """

    model_config = _FROZEN

    name: str = "server"
    flops: number_in(limits.FLOP_RATE) = Field(description="sustained FLOP/s for training")
    device_class: str | None = None
    serving: Literal["shared", "sequential", "dedicated"] = "shared"


class Channel(_Frozen):
    """The shared radio band, divided between devices by bandwidth shares (sum <= 1)."""

    model_config = _FROZEN

    bandwidth_up_hz: number_in(limits.BANDWIDTH)
    bandwidth_dn_hz: number_in(limits.BANDWIDTH)


_OPTIMIZER_COPIES = limits.Range(0, 4, "state copies", integer=True)


class Training(_Frozen):
    """Training settings shared by the fleet.

    ``schedule`` says how split-mode devices share a round: in parallel (SFL, parallel SL: the
    straggler sets the round) or in turn (vanilla SL: the round is the sum). FL-mode devices always
    train in parallel. ``aggregate`` adds the per-round upload and download of the device-side
    model (split-federated learning).
    """

    model_config = _FROZEN

    batch_size: number_in(limits.BATCH) = 32
    local_iters: number_in(limits.LOCAL_ITERS) = 1
    optimizer_copies: number_in(_OPTIMIZER_COPIES) = Field(default=0,
                                                     description="0 SGD, 1 momentum, 2 Adam")
    labels: Literal["server", "device"] = "server"
    schedule: Literal["parallel", "sequential"] = "parallel"
    aggregate: Annotated[bool, Strict()] = True
    rounds: number_in(limits.ROUNDS) = Field(default=1, description="for the total delay")


@dataclass(frozen=True)
class Link:
    """Uplink and downlink rates of one device, bit/s."""

    up_bps: float
    dn_bps: float

    def __post_init__(self) -> None:
        from splitopt.errors import check_finite_nonneg

        check_finite_nonneg("link.up_bps", self.up_bps, positive=True)
        check_finite_nonneg("link.dn_bps", self.dn_bps, positive=True)

    @property
    def seconds_per_bit(self) -> float:
        """Seconds to send one bit up and its gradient bit down."""
        return 1.0 / self.up_bps + 1.0 / self.dn_bps


def link_of(device: Device, channel: Channel, share: float) -> Link:
    """The rates device ``device`` gets with bandwidth share ``share`` of ``channel``."""
    share = limits.check("bandwidth share", share, limits.PLAN_SHARE)
    return Link(share * channel.bandwidth_up_hz * device.spectral_eff_up,
                share * channel.bandwidth_dn_hz * device.spectral_eff_dn)
