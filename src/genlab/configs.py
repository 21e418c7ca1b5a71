"""Config dataclasses from JSON: one place that turns unknown keys and bad values into clear errors."""

from __future__ import annotations

import dataclasses

from genlab.errors import GenlabError


def build_config(cls, values: dict, what: str):
    """A config dataclass from a JSON dict, with a clear error for unknown keys and bad values."""
    if not isinstance(values, dict):
        raise GenlabError(f"the {what} config must be a JSON object, not {type(values).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GenlabError(f"unknown {what} config key(s) {', '.join(unknown)}; known keys: {', '.join(known)}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise GenlabError(f"bad {what} config: {e}.") from None
