"""Grading a predictions file (JSONL / JSON / Parquet / CSV) row by row: `stylealign grade`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylealign.datasets import Skipped, field_text, good_rows, iter_rows
from stylealign.grading.extract import extract_answer, reference_answer
from stylealign.grading.pool import grade_batch
from stylealign.io import check_output_file, write_text_atomically


@dataclass
class FileGrades:
    """Per-row verdicts of a predictions file, plus the rows `skip_bad` left out."""

    rows: list[dict[str, Any]]
    skipped: list[Any]
    timed_out: int
    failed: int

    @property
    def correct(self) -> int:
        return sum(row["correct"] for row in self.rows)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.rows) if self.rows else 0.0


def grade_file(
    path: str | Path,
    *,
    reference_field: str,
    prediction_field: str,
    out: str | Path | None = None,
    timeout: float = 5.0,
    processes: int | None = None,
    last_number: bool = True,
    skip_bad: bool = False,
) -> FileGrades:
    """Grade a JSONL / JSON / Parquet / CSV file of predictions; write per-row verdicts to `out` (JSONL),
    which is never the predictions file itself."""
    if out is not None:
        check_output_file(Path(out), [Path(path)], "--out")
    skipped: list[Any] = []
    locations, ids, predictions, references = [], [], [], []
    for row in good_rows(iter_rows(path), skip_bad, skipped):
        for name in (reference_field, prediction_field):
            if name not in row.values:
                raise ValueError(
                    f"{row.location}: no field {name!r} (fields: {', '.join(map(str, row.values))})"
                )
        try:
            prediction, reference = (field_text(name, row.values[name]) or "" for name in (prediction_field, reference_field))
        except ValueError as err:
            if not skip_bad:
                raise ValueError(f"{row.location}: {err} (--skip-bad skips such rows)") from None
            skipped.append(Skipped(row.location, str(err)))
            continue
        locations.append(row.location)
        ids.append(row.values.get("id"))
        predictions.append(prediction)
        references.append(reference_answer(reference))
    batch = grade_batch(
        predictions, references, timeout=timeout, processes=processes, last_number=last_number
    )
    rows = [
        {
            "location": location,
            "id": ids[i],
            "extracted": extract_answer(prediction, last_number=last_number),
            "reference": reference,
            "correct": batch.verdicts[i],
            "status": batch.status(i),
        }
        for i, (location, prediction, reference) in enumerate(
            zip(locations, predictions, references, strict=True)
        )
    ]
    if out is not None:
        write_text_atomically(Path(out), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return FileGrades(rows=rows, skipped=skipped, timed_out=len(batch.timed_out), failed=len(batch.failed))
