"""`monitoring`: kube-prometheus-stack, Grafana, DCGM exporter, prometheus-adapter."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from components.catalog import serving_metrics as metrics
from components.config.base import (
    QUANTITY,
    ConfigModel,
)


class MonitoringConfig(ConfigModel):
    """kube-prometheus-stack, Grafana, DCGM exporter, prometheus-adapter."""

    enabled: bool = Field(True, description="Install the monitoring stack and the HPA metrics adapter")
    retention: str = Field("15d", pattern=r"^[0-9]+(h|d|w|y)$", description="Prometheus retention")
    storage_size: str = Field("50Gi", pattern=QUANTITY, description="Prometheus volume size")
    retention_size: str = Field(
        "40GB",
        pattern=r"^[0-9]+(B|KB|MB|GB|TB)$",
        description="Prometheus retentionSize: oldest blocks are deleted past it, so a full volume never stops "
        "Prometheus; keep it below storageSize",
    )
    scrape_interval: str = Field(
        "15s",
        pattern=r"^[0-9]+(s|m)$",
        description="Prometheus scrape and rule interval, 5s-60s; the autoscaling rules average over 4 intervals",
    )
    dcgm_exporter: bool = Field(True, description="Run the DCGM exporter on GPU nodes")

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, value: str) -> str:
        metrics.check_scrape_interval(value)
        return value

    @model_validator(mode="after")
    def _retention_fits(self) -> "MonitoringConfig":
        size, retention = _bytes(self.storage_size), _bytes(self.retention_size)
        if size is not None and retention is not None and retention >= size:
            raise ValueError(
                f"@retentionSize: {self.retention_size} does not fit the {self.storage_size} volume (storageSize); "
                "keep it about 20% below so the WAL and compaction have room"
            )
        return self


_BYTE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def _bytes(quantity: str) -> int | None:
    """Bytes of a size like 40GB (Prometheus) or 50Gi (Kubernetes); None if not of that form."""
    import re as _re

    found = _re.fullmatch(r"([0-9]+)([A-Za-z]*)", quantity)
    if not found or found.group(2) not in _BYTE_UNITS:
        return None
    return int(found.group(1)) * _BYTE_UNITS[found.group(2)]
