"""What a buyer can use: hardware (vendor, country of design, export status) and models (origin, license,
quality floor), and the workload the fleet must serve."""

from __future__ import annotations

import math
from dataclasses import dataclass

from retarget.errors import RetargetError
from retarget.fleet.facts import DeviceFacts, ModelFacts
from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin.recipe import Workload


@dataclass(frozen=True)
class FleetWorkload:
    """Requests of PROMPT_LEN prompt tokens and OUTPUT_LEN generated tokens, BATCH at a time per replica;
    with TARGET_TOKENS_S the fleet adds replicas until it serves that many generated tokens/s."""

    prompt_len: int = 2048
    output_len: int = 512
    batch: int = 16
    target_tokens_s: float | None = None

    def __post_init__(self) -> None:
        if min(self.prompt_len, self.output_len, self.batch) < 1:
            raise RetargetError("prompt length, output length and batch must be >= 1", field="workload")
        if self.target_tokens_s is not None and self.target_tokens_s <= 0:
            raise RetargetError("must be > 0", field="--tokens-s")

    @property
    def decode_share(self) -> float:
        """Generated tokens as a share of all tokens (the prefill/decode mix)."""
        return self.output_len / (self.prompt_len + self.output_len)

    def lockin_workload(self) -> Workload:
        """The workload the recipe and lock-in index are computed for: decode at the mean cache length."""
        return Workload(f"fleet-b{self.batch}-{self.prompt_len}+{self.output_len}", self.batch,
                        self.prompt_len + self.output_len // 2, self.prompt_len, "decode")

    def replicas(self, output_tokens_s: float) -> int:
        """Copies of one replica needed to reach the target (1 without a target)."""
        if self.target_tokens_s is None or output_tokens_s <= 0:
            return 1
        return max(1, math.ceil(self.target_tokens_s / output_tokens_s))


def _lower(values: list[str] | None) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values or [] if v.strip())


@dataclass(frozen=True)
class Constraints:
    """Filters; empty include sets mean 'any'. Matching is case-insensitive; licenses match by substring."""

    vendors: frozenset[str] = frozenset()
    exclude_vendors: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()  # country of design of the hardware
    exclude_countries: frozenset[str] = frozenset()
    no_export_controlled: bool = False
    origins: frozenset[str] = frozenset()  # country of the model's developer
    exclude_origins: frozenset[str] = frozenset()
    licenses: frozenset[str] = frozenset()
    exclude_licenses: frozenset[str] = frozenset()
    min_quality: float | None = None

    @classmethod
    def of(cls, *, vendor: list[str] | None = None, exclude_vendor: list[str] | None = None,
           country: list[str] | None = None, exclude_country: list[str] | None = None,
           no_export_controlled: bool = False, origin: list[str] | None = None,
           exclude_origin: list[str] | None = None, license: list[str] | None = None,
           exclude_license: list[str] | None = None, min_quality: float | None = None) -> Constraints:
        return cls(_lower(vendor), _lower(exclude_vendor), _lower(country), _lower(exclude_country),
                   no_export_controlled, _lower(origin), _lower(exclude_origin), _lower(license),
                   _lower(exclude_license), min_quality)

    def check_names(self, vendors: set[str], countries: set[str], origins: set[str]) -> None:
        """Reject a vendor or country that no device or model has (a typo would silently filter nothing)."""
        for opt, given, known in (("--vendor", self.vendors | self.exclude_vendors, vendors),
                                  ("--country", self.countries | self.exclude_countries, countries),
                                  ("--origin", self.origins | self.exclude_origins, origins)):
            unknown = sorted(given - {k.lower() for k in known})
            if unknown:
                raise RetargetError(f"unknown value {unknown[0]!r}; known: {', '.join(sorted(known))}", field=opt)

    def device_allowed(self, profile: HardwareProfile, facts: DeviceFacts) -> str | None:
        """None when the device passes, else why not."""
        vendor, country = profile.vendor.lower(), facts.country.lower()
        if self.vendors and vendor not in self.vendors:
            return f"vendor {profile.vendor} not in --vendor"
        if vendor in self.exclude_vendors:
            return f"vendor {profile.vendor} excluded"
        if self.countries and country not in self.countries:
            return f"designed in {facts.country}, not in --country"
        if country in self.exclude_countries:
            return f"designed in {facts.country}, excluded"
        if self.no_export_controlled and facts.export_control.status == "restricted":
            return "export-controlled (US licence required for China and other listed destinations)"
        return None

    def model_allowed(self, facts: ModelFacts) -> str | None:
        """None when the model passes the origin and license filters, else why not."""
        origin, lic = facts.country.lower(), facts.license.name.lower()
        if self.origins and origin not in self.origins:
            return f"origin {facts.country} not in --origin"
        if origin in self.exclude_origins:
            return f"origin {facts.country} excluded"
        if self.licenses and not any(s in lic for s in self.licenses):
            return f"license {facts.license.name} does not match --license"
        if any(s in lic for s in self.exclude_licenses):
            return f"license {facts.license.name} excluded"
        return None

    def quality_ok(self, facts: ModelFacts) -> str | None:
        """None when the model meets the quality floor (or there is none), else why not."""
        if self.min_quality is None:
            return None
        if facts.quality is None:
            return "no published quality figure (not covered by the index)"
        if facts.quality.value < self.min_quality:
            return f"quality {facts.quality.value:g} below the floor {self.min_quality:g}"
        return None

