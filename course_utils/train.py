"""``python -m course_utils.train``: the command-line trainer, which lives in
:mod:`course_utils.cli.train` (this name is kept so the documented command works)."""
import sys

from .cli.train import (METRIC_COLUMNS, PROG, MetricsWriter, build_parser, main, metric_rows, plot_curves,
                        write_metrics)

__all__ = ["main", "build_parser", "PROG", "METRIC_COLUMNS", "MetricsWriter", "metric_rows", "write_metrics",
           "plot_curves"]

if __name__ == "__main__":
    sys.exit(main())
