"""The "poly" learning-rate schedule of DeepLab and PSPNet: ``lr = base_lr * (1 - progress) ** power``."""
from __future__ import annotations

__all__ = ["PolyLR"]


class PolyLR:
    """The poly schedule: ``lr = base_lr * (1 - progress) ** power``, progress in [0, 1].

    Progress is measured, not counted by calls: the larger of ``step / total_steps`` and
    ``elapsed_s / time_budget_s``. So a time-budgeted run still anneals to zero at the
    end of its budget, and resuming needs only the step and elapsed time.
    """

    def __init__(self, optimizer, total_steps=None, time_budget_s=None, power: float = 0.9):
        self.optimizer = optimizer
        self.total_steps, self.time_budget_s, self.power = total_steps, time_budget_s, power
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def progress(self, step: int, elapsed_s: float) -> float:
        p = 0.0
        if self.total_steps:
            p = max(p, step / self.total_steps)
        if self.time_budget_s:
            p = max(p, elapsed_s / self.time_budget_s)
        return min(p, 1.0)

    def apply(self, step: int, elapsed_s: float) -> float:
        factor = (1.0 - self.progress(step, elapsed_s)) ** self.power
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "time_budget_s": self.time_budget_s,
                "power": self.power, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        # The plan (total steps, budget) comes from the current call, so a resumed run may
        # be given more epochs; the base learning rates are the run's own.
        self.base_lrs = list(state["base_lrs"])
