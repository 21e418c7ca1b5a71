"""Numbers that users compare across tools, in the field's conventions and units."""

from genlab.metrics.likelihood import active_units, bits_per_dim, evaluate

__all__ = ["active_units", "bits_per_dim", "evaluate"]
