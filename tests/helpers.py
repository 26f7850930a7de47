"""Small helpers shared by several test modules (pytest puts tests/ on sys.path)."""
from course_utils.models import build_model


def small(name, num_classes=5, **options):
    """A narrow model (width 8 unless given): the shapes and the code paths, fast."""
    options.setdefault("width", 8)
    return build_model(name, num_classes, **options)
