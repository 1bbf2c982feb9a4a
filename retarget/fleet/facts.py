"""Sourced facts about devices (vendor, country, export status, TDP, price) and models (developer, country,
license, release date, quality): data/devices.yaml and data/models.yaml, validated on load.

Every price, TDP and quality figure is a `Sourced` number with the URL it comes from; a figure without one
is rejected with the file and field named. A fact not found in a public source is absent, and reads as None.
"""

from __future__ import annotations

import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retarget.errors import RetargetError
from retarget.hw_profiles.schema import HardwareProfile

DATA_DIR = Path(__file__).parent / "data"

# Hardware blocs of the bloc view, in display order.
BLOCS: dict[str, str] = {
    "nvidia-full": "NVIDIA full-spec", "nvidia-china": "NVIDIA China-market", "amd": "AMD",
    "huawei-ascend": "Huawei Ascend", "cambricon": "Cambricon", "google-tpu": "Google TPU",
    "aws-trainium": "AWS Trainium", "intel-gaudi": "Intel Gaudi", "apple": "Apple", "cpu": "CPUs",
}
ExportStatus = Literal["restricted", "china-market", "below-threshold", "not-us"]


class Sourced(BaseModel):
    """One number and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str = Field(pattern=r"^(https?://|--set)", description="URL, or '--set' for a user override")
    kind: Literal["published", "derived", "assumed"] = "published"
    date: str | None = None
    currency: Literal["USD", "EUR", "CNY"] = "USD"
    note: str = ""

    @field_validator("date", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        return None if v is None else str(v)  # YAML reads 2026-05-18 as a date, 2026 as an int


class SourcedText(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    source: str = Field(pattern=r"^https?://")


class ExportControl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: ExportStatus
    source: str = Field(pattern=r"^https?://")
    kind: Literal["published", "derived"] = "published"
    note: str = ""


class DeviceFacts(BaseModel):
    """What a buyer needs to know about one device besides its speed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bloc: Literal[tuple(BLOCS)]  # type: ignore[valid-type]
    country: str
    foundry: SourcedText | None = None
    export_control: ExportControl
    tdp_w: Sourced | None = None
    rent_usd_per_hour: Sourced | None = None
    purchase_usd: Sourced | None = None


class License(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    restricts: str
    source: str = Field(pattern=r"^https?://")
    checked: bool
    note: str = ""


class ModelFacts(BaseModel):
    """Who made a model, under which license, and how good it is by the one index used here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    developer: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    release_date: datetime.date
    license: License
    quality: Sourced | None = None


class QualityIndex(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    unit: str
    about: str = Field(pattern=r"^https?://")


def _load(name: str) -> dict[str, Any]:
    path = DATA_DIR / name
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as err:
        raise RetargetError(f"cannot read: {err}", source=f"retarget/fleet/data/{name}") from None
    if not isinstance(data, dict):
        raise RetargetError("expected a YAML mapping", source=f"retarget/fleet/data/{name}")
    return data


def _validate(cls: type[BaseModel], raw: Any, source: str, key: str) -> Any:
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in (key, *first["loc"]))
        raise RetargetError(first["msg"], source=source, field=field) from None


def parse_devices(raw: dict[str, Any], source: str = "retarget/fleet/data/devices.yaml") -> dict[str, DeviceFacts]:
    """Device facts from the parsed YAML RAW (errors name SOURCE and the field)."""
    return {k: _validate(DeviceFacts, v, source, f"devices.{k}") for k, v in (raw.get("devices") or {}).items()}


def parse_models(raw: dict[str, Any], source: str = "retarget/fleet/data/models.yaml") -> dict[str, ModelFacts]:
    """Model facts from the parsed YAML RAW (errors name SOURCE and the field)."""
    return {k: _validate(ModelFacts, v, source, f"models.{k}") for k, v in (raw.get("models") or {}).items()}


@cache
def device_facts() -> dict[str, DeviceFacts]:
    """Bundled device facts keyed by hardware-profile id."""
    return parse_devices(_load("devices.yaml"))


@cache
def model_facts() -> dict[str, ModelFacts]:
    """Bundled model facts keyed by registry name."""
    return parse_models(_load("models.yaml"))


@cache
def quality_index() -> QualityIndex:
    return _validate(QualityIndex, _load("models.yaml").get("quality_index"), "retarget/fleet/data/models.yaml",
                     "quality_index")


def facts_for(profile: HardwareProfile) -> DeviceFacts:
    """Facts of PROFILE (a profile the fleet data does not cover is an error naming it)."""
    facts = device_facts().get(profile.id)
    if facts is None:
        raise RetargetError(f"no fleet facts for device {profile.id!r}", source="retarget/fleet/data/devices.yaml",
                            field=f"devices.{profile.id}")
    return facts


def tdp(profile: HardwareProfile) -> Sourced | None:
    """The device's TDP: the hardware profile's value (with its source), else the fleet file's, else None."""
    if profile.tdp_w is None:
        return facts_for(profile).tdp_w
    prov = profile.provenance["tdp_w"]
    kind = prov.kind if prov.kind in ("published", "derived") else "assumed"
    return Sourced(value=profile.tdp_w, source=prov.source, kind=kind, note="from the hardware profile")
