"""build_optimizer: fused kernels where PyTorch has them, the same updates as its reference loop."""
import pytest
import torch
from torch import nn

from course_utils.training import TrainConfig
from course_utils.training.optimizer import build_optimizer


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_fused_optimizer_updates_as_pytorchs_single_tensor_loop(name):
    model, ref_model = small_model(), small_model()
    config = TrainConfig(epochs=1, optimizer=name, lr=0.05, weight_decay=0.01).validate()
    opt = build_optimizer(model, config)
    assert all(g["fused"] for g in opt.param_groups)
    # The reference: the same parameter groups, PyTorch's for-loop implementation.
    decay = [p for p in ref_model.parameters() if p.ndim > 1]
    no_decay = [p for p in ref_model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    ref = (torch.optim.AdamW(groups, lr=0.05, foreach=False) if name == "adamw" else
           torch.optim.SGD(groups, lr=0.05, momentum=0.9, foreach=False))
    # The same gradients for both (random, not from a model, whose training would amplify
    # rounding differences): five updates must agree.
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(model.parameters(), ref_model.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert any((p - q0).abs().max() > 0.01 for p, q0 in zip(model.parameters(), small_model().parameters()))


def test_parameters_on_meta_get_the_loop_not_fused_kernels():
    model = small_model().to("meta")
    opt = build_optimizer(model, TrainConfig(epochs=1).validate())
    assert not any(g["fused"] for g in opt.param_groups)


@pytest.mark.parametrize("name, cls", [("adamw", "AdamW"), ("sgd", "SGD")])
def test_a_torch_without_fused_kernels_here_gets_the_plain_optimizer(monkeypatch, name, cls):
    # What an older PyTorch does when asked for fused kernels on the CPU: it refuses.
    real = getattr(torch.optim, cls)

    def no_fused_here(params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                               "supported devices: ['cuda']")
        return real(params, *args, fused=fused, **kwargs)

    monkeypatch.setattr(torch.optim, cls, no_fused_here)
    config = TrainConfig(epochs=1, optimizer=name, lr=0.05).validate()
    with pytest.warns(UserWarning, match="fused .* is not available here"):
        opt = build_optimizer(small_model(), config)
    assert isinstance(opt, real) and not any(g["fused"] for g in opt.param_groups)
    assert opt.param_groups[0]["lr"] == 0.05
