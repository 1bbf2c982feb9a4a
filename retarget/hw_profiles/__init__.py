"""Hardware profiles: one sourced YAML per device (profiles/*.yaml), a pydantic schema, and a loader."""

from retarget.hw_profiles.loader import apply_overrides, list_profiles, load_profile, parse_overrides
from retarget.hw_profiles.schema import PEAK_FORMATS, FieldSource, HardwareProfile

__all__ = ["PEAK_FORMATS", "FieldSource", "HardwareProfile", "apply_overrides", "list_profiles",
           "load_profile", "parse_overrides"]
