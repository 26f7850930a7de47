"""The "bold font" demo: fewer test images, wider intervals, and the bold font goes."""
import numpy as np
import pytest

from course_utils.widgets.bootstrap import BootstrapDemo


def scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.9, n)
    # a beats b by 0.01 on average with per-image noise 0.03: clear on 200 images, not on 10.
    return {"a": base + 0.01 + rng.normal(0, 0.03, n), "b": base, "c": base - 0.2}


def test_the_bold_font_is_earned_on_many_images_and_lost_on_few():
    demo = BootstrapDemo({"score": (scores(), None)}, n_resamples=300)
    assert demo.error is None and demo.controls["images"].value == 200
    assert demo.winner.best == "a" and demo.winner.versus["b"].low > 0
    demo.controls["images"].value = 10
    assert demo.error is None
    assert demo.winner.best is None
    assert demo.winner.versus["b"].low < 0 < demo.winner.versus["b"].high
    assert "no bold" in demo.title.get_text() and "score on 10 images" in demo.message.value


def test_statistics_of_different_image_counts_are_refused():
    bad = scores()
    bad["c"] = bad["c"][:50]
    with pytest.raises(ValueError, match="same images"):
        BootstrapDemo({"score": (bad, None)})
