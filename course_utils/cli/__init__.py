"""The command-line tools, apart from the library they drive.

* :mod:`.train`: ``python -m course_utils.train`` (one process or ``torchrun``), over
  :func:`course_utils.training.fit`.
* :mod:`.evaluate`: ``python -m course_utils.evaluate``, over
  :func:`course_utils.training.evaluate`.
* :mod:`.zoo`: ``python -m course_utils.cli.zoo``, retrains the committed model zoo.
* :mod:`.pretrain`: ``python -m course_utils.cli.pretrain``, retrains the committed encoder.
* :mod:`.common` (data specs, model options, one-line errors) and :mod:`.distributed`
  (joining a ``torchrun`` process group).

The library never imports this package (a test walks the imports); the two documented
shims ``course_utils.train`` and ``course_utils.evaluate`` run these when started with
``python -m``.

Importing this package sets how OpenMP threads wait (:mod:`course_utils.threads`): for
``python -m course_utils.train`` and ``evaluate`` that happens before torch is imported,
which is when it takes effect.
"""
from ..threads import configure_openmp_waiting

configure_openmp_waiting()
