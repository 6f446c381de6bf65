"""The configuration: pydantic models and the TOML + rules.d loader."""

from .loader import DEFAULT_CONFIG_PATH, ConfigError, Problem, load_config, rules_files
from .models import AUTO, ALL, Config, ControlSettings, DaemonSettings, Match, MetricsSettings, Rule
from ..units import format_size, parse_duration, parse_size

__all__ = [
    "ALL",
    "AUTO",
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "ControlSettings",
    "DaemonSettings",
    "Match",
    "MetricsSettings",
    "Problem",
    "Rule",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_size",
    "rules_files",
]
