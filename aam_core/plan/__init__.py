"""Run planning, torch-free: the run configuration (the one schema of a run's settings), the
rule for targets, config files, and the planner that resolves a run or names what to fix."""

from aam_core.plan.config import RunConfig, Stage
from aam_core.plan.planner import (
    DatasetFacts,
    JobKind,
    Kind,
    ModelFacts,
    ModelKind,
    ResolvedRun,
    architecture,
    check_request,
    plan_run,
)
from aam_core.plan.targets import MAX_NUMERIC_CLASSES, TargetSpec, check_target

__all__ = [
    "MAX_NUMERIC_CLASSES",
    "DatasetFacts",
    "JobKind",
    "Kind",
    "ModelFacts",
    "ModelKind",
    "ResolvedRun",
    "RunConfig",
    "Stage",
    "TargetSpec",
    "architecture",
    "check_request",
    "check_target",
    "plan_run",
]
