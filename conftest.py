"""Repository-wide pytest configuration: how nbval compares notebook outputs.

nbval already ignores PNG images (they differ by matplotlib version and fonts) and
widget model ids (random per run). On top of that we skip:

* ``stderr``: warnings from libraries (deprecations, tqdm, threading notices) change
  with versions and platforms, and never carry the lesson; anything a student must
  see is printed to stdout.
* ``text/html``: pandas-like tables and widget fallbacks render with library-specific
  markup and ids; every notebook prints the numbers that matter as text/plain too.
"""


def pytest_collectstart(collector):
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("text/html", "stderr")
