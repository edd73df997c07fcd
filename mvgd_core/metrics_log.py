"""The trainer's metrics.csv / val.csv (and TensorBoard when it is installed), resume-aware."""
from __future__ import annotations

import csv
import math
from pathlib import Path


class MetricsLog:
    """CSV (rank 0) with rows after a resumed step dropped, plus TensorBoard when importable."""

    def __init__(self, path: Path, resume_step: int, tb_dir: Path | None):
        self.path, self.fields, self.tb = path, None, None
        if path.exists():
            rows = list(csv.DictReader(path.open()))
            keep = [r for r in rows if int(float(r.get("step", 0))) <= resume_step]
            if keep or rows:
                self.fields = list(rows[0].keys()) if rows else None
                with path.open("w", newline="") as f:
                    if self.fields:
                        w = csv.DictWriter(f, self.fields)
                        w.writeheader()
                        w.writerows(keep)
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(tb_dir))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, row: dict, prefix: str = "") -> None:
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(prefix + k, v, row["step"])
            self.tb.flush()
