"""Notebook 00's first demo: its legend must hide no sample and no part of the curves."""
import pytest

from course_utils.widgets import signal_demo
from course_utils.widgets.base import control_positions


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
def test_legend_sits_beside_the_plot_inside_the_picture(method):
    demo = signal_demo()
    demo.controls["method"].value = method
    for _, samples in control_positions(demo.controls["samples"]):
        demo.controls["samples"].value = samples
        assert demo.error is None
        renderer = demo.figure.canvas.get_renderer()
        legend = demo.ax.get_legend().get_window_extent(renderer)
        plot = demo.ax.get_window_extent(renderer)
        # Beside the axes (so it covers no data whatever the samples), within the picture.
        assert legend.x0 > plot.x1, (samples, legend, plot)
        assert 0 <= legend.y0 and legend.x1 <= demo.figure.bbox.width and legend.y1 <= demo.figure.bbox.height
        assert {t.get_text() for t in demo.ax.get_legend().get_texts()} == {"true signal", "interpolated", "samples"}
