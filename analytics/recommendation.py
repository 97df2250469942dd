"""A container recommendation, as the VPA status writes it."""

from __future__ import annotations

from dataclasses import dataclass

from analytics.quantity import format_cpu_millicores, format_memory_bytes

__all__ = ["ContainerRecommendation", "Resources"]


@dataclass(frozen=True)
class Resources:
    """An amount of CPU (cores) and memory (bytes)."""

    cpu_cores: float
    memory_bytes: float

    @classmethod
    def from_amounts(cls, cpu_millicores: int, memory_bytes: int) -> Resources:
        """From integer amounts as the recommender computes them."""
        return cls(cpu_millicores / 1000.0, float(memory_bytes))

    @property
    def cpu_millicores(self) -> int:
        """CPU in whole millicores."""
        return round(self.cpu_cores * 1000)

    @property
    def memory_whole_bytes(self) -> int:
        """Memory in whole bytes."""
        return round(self.memory_bytes)

    def to_quantities(self) -> dict[str, str]:
        """`{"cpu": "126m", "memory": "250Mi"}` formatted as the stock recommender does."""
        return {
            "cpu": format_cpu_millicores(self.cpu_millicores),
            "memory": format_memory_bytes(self.memory_whole_bytes),
        }


@dataclass(frozen=True)
class ContainerRecommendation:
    """Recommended resources for one container of one workload."""

    cluster: str
    namespace: str
    workload: str
    container_name: str
    target: Resources
    lower_bound: Resources
    upper_bound: Resources
    uncapped_target: Resources

    def to_status_entry(self) -> dict[str, object]:
        """One `status.recommendation.containerRecommendations[]` item of a VPA."""
        return {
            "containerName": self.container_name,
            "target": self.target.to_quantities(),
            "lowerBound": self.lower_bound.to_quantities(),
            "upperBound": self.upper_bound.to_quantities(),
            "uncappedTarget": self.uncapped_target.to_quantities(),
        }
