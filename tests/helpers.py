"""Small helpers shared by several test modules (pytest puts tests/ on sys.path)."""
from datetime import datetime

from course_utils.models import build_model


def small(name, num_classes=5, **options):
    """A narrow model (width 8 unless given): the shapes and the code paths, fast."""
    options.setdefault("width", 8)
    return build_model(name, num_classes, **options)


def stored_seconds(cells) -> float:
    """Execution time of notebook ``cells``, as recorded in their metadata by the last `make refs`."""
    total = 0.0
    for cell in cells:
        ex = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            t0, t1 = (datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
            total += (t1 - t0).total_seconds()
    return total
