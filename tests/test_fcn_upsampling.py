"""FCN's upsampling layer in both of its forms (polyphase, PyTorch's transposed convolution),
and the choice between them per device."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from course_utils.models import BilinearUpsample
from course_utils.models.fcn import set_upsampling_method, upsampling_method

from helpers import assert_same_values_and_gradients, small

pytestmark = pytest.mark.usefixtures("one_thread")


def transposed_by_definition(x, weight, f, depthwise):
    """A stride-``f`` transposed convolution by its definition: every input sample, times the
    kernel, added into the output at ``f * i`` (the kernel centred there). ``x`` gets the
    layer's replicated last row and column first; autograd differentiates the sums."""
    x = torch.cat([x, x[..., -1:, :]], -2)
    x = torch.cat([x, x[..., :, -1:]], -1)
    n, c, h, w = x.shape
    k = 2 * f - 1
    out = torch.zeros(n, c, f * (h - 1) + k, f * (w - 1) + k, dtype=x.dtype)
    for a in range(k):
        for b in range(k):
            if depthwise:        # weight (C, 1, k, k)
                contribution = x * weight[:, 0, a, b][None, :, None, None]
            else:                # weight (C_in, C_out, k, k)
                contribution = torch.einsum("nihw,io->nohw", x, weight[:, :, a, b])
            out[..., a:a + f * h:f, b:b + f * w:f] += contribution
    return out[..., f - 1:, f - 1:]      # padding f - 1 puts input sample i on output f * i


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 5), w=st.integers(1, 5), f=st.sampled_from([1, 2, 3, 4, 8]), c=st.integers(1, 3),
       depthwise=st.booleans(), trim=st.integers(0, 7), method=st.sampled_from(["polyphase", "transposed"]),
       seed=st.integers(0, 2**16))
def test_both_forms_compute_the_transposed_convolution(h, w, f, c, depthwise, trim, method, seed):
    g = torch.Generator().manual_seed(seed)
    layer = BilinearUpsample(c, f, depthwise=depthwise, method=method).double()
    x = torch.randn(2, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    size = (max(1, f * h - trim % f), max(1, f * w - (trim * 3) % f))
    y = layer(x, size)
    assert y.shape == (2, c, *size)
    if layer.up is None:                      # factor 1: the identity
        torch.testing.assert_close(y, x, rtol=0, atol=0)
        return
    with torch.no_grad():
        layer.up.weight.copy_(torch.randn(layer.up.weight.shape, generator=g, dtype=torch.float64))
    y = layer(x, size)
    ref = transposed_by_definition(x, layer.up.weight, f, depthwise)[..., :size[0], :size[1]]
    assert_same_values_and_gradients(y, ref, (x, layer.up.weight), g)


def test_auto_is_polyphase_on_the_cpu_and_pytorchs_kernel_elsewhere():
    assert upsampling_method("cpu") == "polyphase"
    assert upsampling_method("cuda") == upsampling_method("mps") == "transposed"
    layer = BilinearUpsample(3, 4)
    assert layer.method == "auto"
    assert layer.method_for("cpu") == "polyphase" and layer.method_for("cuda") == "transposed"
    layer.method = "polyphase"
    assert layer.method_for("cuda") == "polyphase"


@pytest.mark.parametrize("method, used", [("auto", "polyphase"), ("polyphase", "polyphase"),
                                          ("transposed", "transposed")])
def test_forward_runs_the_chosen_form(method, used):
    # On this CPU, "auto" must take the polyphase path; a spy on each path says which ran.
    layer = BilinearUpsample(2, 4, method=method)
    ran = []
    polyphase, transposed = layer._polyphase, layer.up.forward
    layer._polyphase = lambda x: ran.append("polyphase") or polyphase(x)
    layer.up.forward = lambda x: ran.append("transposed") or transposed(x)
    layer(torch.rand(1, 2, 3, 3), (12, 12))
    assert ran == [used]


def test_the_form_changes_neither_the_state_dict_nor_the_predictions():
    torch.manual_seed(0)
    model = small("fcn8s").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 37, 45)
    outputs = {}
    for method in ("polyphase", "transposed", "auto"):
        assert set_upsampling_method(model, method) == 3          # c4, c3 and the final 8x
        with torch.no_grad():
            outputs[method] = model(x)
        state = model.state_dict()
        assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in before)
    torch.testing.assert_close(outputs["polyphase"], outputs["transposed"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs["auto"], outputs["polyphase"], rtol=0, atol=0)
    # The printed model (notebook 05 shows it) is unchanged for the default.
    assert "method" not in repr(model.upsample["out"])
    set_upsampling_method(model, "transposed")
    assert "method='transposed'" in repr(model.upsample["out"])


@pytest.mark.parametrize("depthwise", [True, False])
def test_channels_last_gradients_keep_their_parameters_strides_in_either_form(depthwise):
    # DistributedDataParallel copies (and warns about) a gradient laid out unlike its parameter.
    for method in ("polyphase", "transposed"):
        model = small("fcn8s", depthwise_upsampling=depthwise).to(memory_format=torch.channels_last)
        set_upsampling_method(model, method)
        model(torch.rand(2, 3, 40, 40).contiguous(memory_format=torch.channels_last))["out"].sum().backward()
        assert [n for n, p in model.named_parameters() if p.grad.stride() != p.stride()] == []


def test_an_unknown_form_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"method must be one of 'auto', 'polyphase', 'transposed'; got 'zeros'"):
        BilinearUpsample(2, 2, method="zeros")
    layer = BilinearUpsample(2, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        layer.method = "fast"
    with pytest.raises(ValueError, match="method must be one of"):
        set_upsampling_method(small("fcn8s"), "ConvTranspose2d")
