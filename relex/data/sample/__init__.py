"""The bundled Korean relation-extraction sample (KLUE-RE JSON format).

Written for this project by ``generate.py`` (deterministic; re-run it to reproduce
``klue_sample.json``): invented people, organisations, places and dates in varied sentences, over
a subset of the KLUE-RE labels including ``no_relation``. It lets ``relex sweep jobs/smoke.py`` and
``relex train`` run on a fresh machine with no downloads.
"""

from __future__ import annotations

from pathlib import Path

from relex.config import NEGATIVE_LABEL

SAMPLE_PATH: Path = Path(__file__).resolve().parent / "klue_sample.json"
__all__ = ["SAMPLE_PATH", "SAMPLE_LABELS"]


def __getattr__(name: str):
    # SAMPLE_LABELS: no_relation first, then the relations in sorted order (computed on first
    # use, so that ``python -m relex.data.sample.generate`` runs without a double import)
    if name == "SAMPLE_LABELS":
        from relex.data.sample.generate import RELATIONS

        return (NEGATIVE_LABEL, *sorted(label for label, *_ in RELATIONS))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
