"""How usage samples aggregate into per-container state; defaults are the stock flags."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelParams"]

_DAY_S = 24 * 3600.0


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class ModelParams(BaseModel):
    """Aggregation settings shared by every strategy (upstream flag in each description)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_histogram_decay_half_life_s: float = Field(
        _DAY_S,
        ge=1e-6,
        description="half-life of CPU sample weights, seconds (--cpu-histogram-decay-half-life)",
    )
    memory_histogram_decay_half_life_s: float = Field(
        _DAY_S,
        ge=1e-6,
        description="half-life of memory peak weights, seconds "
        "(--memory-histogram-decay-half-life)",
    )
    memory_aggregation_interval_s: float = Field(
        _DAY_S,
        ge=1e-6,
        description="one memory peak per container per interval, seconds "
        "(--memory-aggregation-interval)",
    )
    memory_aggregation_interval_count: int = Field(
        8,
        ge=1,
        description="intervals of history kept: a container with no sample for this many "
        "intervals is forgotten (--memory-aggregation-interval-count)",
    )
    oom_bump_up_ratio: float = Field(
        1.2, ge=1, description="memory after an OOM kill is at least this times the memory used"
    )
    oom_min_bump_up_bytes: float = Field(
        100 * 1024 * 1024,
        ge=0,
        description="memory after an OOM kill is at least this many bytes above the memory used",
    )

    @property
    def cpu_half_life_ns(self) -> int:
        """CPU half-life in nanoseconds."""
        return _ns(self.cpu_histogram_decay_half_life_s)

    @property
    def memory_half_life_ns(self) -> int:
        """Memory half-life in nanoseconds."""
        return _ns(self.memory_histogram_decay_half_life_s)

    @property
    def memory_interval_ns(self) -> int:
        """Memory aggregation interval in nanoseconds."""
        return _ns(self.memory_aggregation_interval_s)

    @property
    def history_window_ns(self) -> int:
        """Interval times count: how long an idle container's state is kept, nanoseconds."""
        return self.memory_interval_ns * self.memory_aggregation_interval_count

    def model_fields_only(self) -> ModelParams:
        """These settings alone, without the fields a subclass adds."""
        return ModelParams(**{name: getattr(self, name) for name in ModelParams.model_fields})
