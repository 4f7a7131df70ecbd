"""The shipped default router, and how the `[routing]` settings table configures it.

Settings keys (all optional; TOML-compatible values):

- `participants_path`, `institutions_path`: CSV files; default the copies shipped in
  `routing/data/`.
- `rules`: the decision table (see `routing.rules`); default `DEFAULT_RULES`.
- `limits`: the BEPS caps (see `routing.limits`); default `DEFAULT_LIMITS`.
- `when_closed_default`: `queue`, `refuse` or `beps`; default `queue`.
- `hvps_only_types`, `institution_types`, `routable_types`: business type lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.errors import Problem, ValidationFailed
from routing.directory import Directory
from routing.institutions import Institutions
from routing.router import Router

DATA_DIR = Path(__file__).resolve().parent / "data"
PARTICIPANTS_PATH = DATA_DIR / "participants.csv"
INSTITUTIONS_PATH = DATA_DIR / "institutions.csv"

SETTINGS_KEYS = (
    "participants_path", "institutions_path", "rules", "limits", "when_closed_default",
    "hvps_only_types", "institution_types", "routable_types",
)


def load_default(settings_dict: Mapping[str, Any] | None = None,
                 clock: Clock | None = None) -> Router:
    """A router on the shipped data, changed by the `[routing]` settings table if given.

    A whole settings mapping with a `routing` key is accepted too.
    """
    settings = dict(settings_dict or {})
    if isinstance(settings.get("routing"), Mapping):
        settings = dict(settings["routing"])
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise ValidationFailed(Problem("routing_setting_unknown", "routing", unknown,
                                       ", ".join(SETTINGS_KEYS)))
    directory = Directory.load(settings.get("participants_path") or PARTICIPANTS_PATH, clock)
    institutions = Institutions.load(settings.get("institutions_path") or INSTITUTIONS_PATH)
    return Router(
        directory, institutions,
        rules=settings.get("rules"), limits=settings.get("limits"),
        when_closed_default=settings.get("when_closed_default", "queue"),
        hvps_only_types=settings.get("hvps_only_types"),
        institution_types=settings.get("institution_types"),
        routable_types=settings.get("routable_types"),
    )
