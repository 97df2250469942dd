"""A report from settings (or a fleet file) to frames and a page: the glue between the
command line, `scan` (the I/O), `compute` and `page` (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from analytics.sources.prometheus import PrometheusHistory, PrometheusSourceConfig
from recommender.kube.rest import KubeClient, load_api_client
from recommender.report.compute import container_report, rollup, usage_rows
from recommender.report.page import interval_s, render_page, usage_series
from recommender.report.scan import Progress, Scan, ScanOptions, scan_cluster
from recommender.settings import load_settings


@dataclass(frozen=True)
class ReportRequest:
    config: Path | None
    overrides: Mapping[str, object]
    fleet: Path | None
    start: dt.datetime
    end: dt.datetime
    step_s: int
    all_recommenders: bool = False
    cpu_risk_pct: float = 5.0


@dataclass
class Report:
    """The containers' rows; `level()` rolls them up, `html()` renders the page."""

    scan: Scan
    request: ReportRequest
    problems: list[str] = field(default_factory=list)
    failed: bool = False

    @cached_property
    def _frames(self) -> tuple[pl.DataFrame, ...]:
        return self.scan.frames()

    @cached_property
    def containers(self) -> pl.DataFrame:
        pods, targets, workloads, samples, kills = self._frames
        return container_report(
            pods,
            targets,
            workloads,
            samples,
            kills,
            step_s=self.request.step_s,
            cpu_risk_pct=self.request.cpu_risk_pct,
        )

    def level(self, level: str) -> pl.DataFrame:
        return rollup(self.containers, level)

    def html(self) -> str:
        pods, targets, _, samples, _ = self._frames
        window = (self.request.end - self.request.start).total_seconds()
        interval = interval_s(window, self.request.step_s)
        series = usage_series(usage_rows(samples, pods, targets), self.request.start, interval)
        return render_page(
            self.containers,
            {level: self.level(level) for level in ("cluster", "namespace", "workload")},
            series,
            start=self.request.start,
            end=self.request.end,
            interval=interval,
            notes=self.problems,
        )


def _with_step(config: PrometheusSourceConfig, step_s: int, cluster: str) -> PrometheusSourceConfig:
    fields = {name: getattr(config, name) for name in type(config).model_fields}
    history_s = max(config.history_s, step_s)
    return PrometheusSourceConfig.model_validate(
        {**fields, "step_s": step_s, "cluster": cluster, "history_s": history_s}
    )


def make_report(request: ReportRequest, progress: Progress) -> Report:
    """Scan every cluster asked for, then build the report (raises ValueError for settings
    that do not load)."""
    scan = Scan()
    common = {
        "start": request.start,
        "end": request.end,
        "all_recommenders": request.all_recommenders,
    }
    if request.fleet is not None:
        from recommender.fleet.config import load_fleet  # noqa: PLC0415

        fleet = load_fleet(request.fleet)
        name = str(request.overrides.get("recommender_name") or "vpa-fleet")
        for cluster in fleet.clusters:
            kubeconfig = str(cluster.kubeconfig) if cluster.kubeconfig else None
            kube = KubeClient(load_api_client(kubeconfig, cluster.context))
            with PrometheusHistory(
                _with_step(cluster.prometheus, request.step_s, cluster.name)
            ) as prometheus:
                options = ScanOptions(
                    cluster=cluster.name,
                    recommender_name=name,
                    serves=cluster.serves,
                    **common,  # type: ignore[arg-type]
                )
                scan_cluster(kube, prometheus, options, scan, progress)
    else:
        settings = load_settings(request.config, request.overrides)
        if settings.prometheus is None:
            raise ValueError(
                "no Prometheus configured: pass --prometheus-url URL (or set it in --config)"
            )
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        kube = KubeClient(load_api_client(kubeconfig, settings.context))
        config = _with_step(settings.prometheus, request.step_s, settings.cluster)
        with PrometheusHistory(config) as prometheus:
            options = ScanOptions(
                cluster=settings.cluster,
                namespaces=settings.namespaces,
                recommender_name=settings.recommender_name,
                **common,  # type: ignore[arg-type]
            )
            scan_cluster(kube, prometheus, options, scan, progress)
    progress(f"{scan.vpas} VPA(s) read, {scan.queries} Prometheus queries")
    return Report(scan, request, [*scan.failures, *scan.problems], failed=bool(scan.failures))
