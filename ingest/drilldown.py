"""A material's line in the course view, with what a drill-down draws: the watched ranges
(a coverage strip per video) and the seconds claimed but not credited."""

from __future__ import annotations

from ingest.models import MaterialProgress
from shared.domain.catalog import Material
from shared.domain.progress import WatchState


def material_progress(material: Material, state: WatchState) -> MaterialProgress:
    return MaterialProgress(
        material_id=material.material_id,
        title=material.title,
        type=material.type,
        watch_time=state.position,
        progress_percentage=state.progress,
        completed=state.completed,
        watched_ranges=[(a, b) for a, b in state.covered],
        unverified_seconds=state.unverified_seconds,
    )
