"""What a training run shows: progress lines on the terminal and JSON lines in ``--log``."""

import contextlib
import json
import math

from .files import io_failure


class Reporter:
    """Progress lines on ``out`` and JSON lines in the ``--log`` file."""

    def __init__(self, settings, log, log_path=None):
        self.settings, self.log, self.log_path = settings, log, log_path

    def line(self, step, data, seconds, figures, *, final=False, extra=None):
        record = {"step": step, "data": data, "seconds": round(seconds, 3), **figures}
        record.update(extra or {})
        if final:
            record["final"] = True
        if self.log is not None:
            try:
                self.log.write(json.dumps(record) + "\n")
                self.log.flush()
            except OSError as exc:
                with contextlib.suppress(OSError):  # closed even if its buffer cannot go out
                    self.log.close()
                self.log = None  # nothing more goes there
                raise io_failure("--log", self.log_path, exc) from None
        return record

    def progress(self, step, data, figures, *, rate, elapsed):
        total, max_seconds = self.settings.steps, self.settings.max_seconds
        left = (total - step) / rate if rate > 0 else math.inf
        if max_seconds is not None:
            left = min(left, max(max_seconds - elapsed, 0.0))
        shown = "  ".join(f"{k} {fmt(v)}" for k, v in figures.items())
        print(f"step {step}/{total}  data {data}  {shown}  {rate:.1f} steps/s  "
              f"left {duration(left)}", file=self.settings.out, flush=True)


def fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
