"""The ops block library: shapes, gradient flow, parameter counts, FFF/MoE routing, quantization, export."""
from __future__ import annotations

import ast
import copy
import math
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch.set_num_threads(1)

from archscout.errors import EvaluationError, UnknownNameError  # noqa: E402
from archscout.ops import (  # noqa: E402
    BLOCKS,
    CELL_OPS,
    FFNS,
    MIXERS,
    QUANT_MODES,
    make_block,
    make_cell_op,
    make_ffn,
    make_mixer,
    quantize,
    total_aux_loss,
)
from archscout.ops.quant import QuantConv, QuantLinear  # noqa: E402

OPS_DIR = Path(__file__).resolve().parents[2] / "src" / "archscout" / "ops"
SPATIAL = {1: (7,), 2: (7, 6)}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def ceil_shape(spatial: tuple[int, ...], stride: int) -> tuple[int, ...]:
    return tuple(math.ceil(s / stride) for s in spatial)


def assert_grads(m: torch.nn.Module, out: torch.Tensor) -> None:
    """Every trainable parameter gets a finite, non-zero gradient."""
    target = torch.randn_like(out)
    ((out - target) ** 2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# ---------------------------------------------------------------- spatial blocks

@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_block_shape(name: str, dim: int, stride: int) -> None:
    torch.manual_seed(0)
    for c_in, c_out in ((4, 8), (8, 8)):
        m = make_block(name, c_in, c_out, stride=stride, dim=dim)
        x = torch.randn(2, c_in, *SPATIAL[dim])
        assert m(x).shape == (2, c_out, *ceil_shape(SPATIAL[dim], stride)), (name, c_in, c_out)


@pytest.mark.parametrize("name", BLOCKS)
def test_block_gradients(name: str) -> None:
    torch.manual_seed(0)
    m = make_block(name, 4, 8, stride=2, dim=2)
    x = torch.randn(3, 4, 7, 6, requires_grad=True)
    assert_grads(m, m(x))
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name,c_in,c_out,stride,dim,opts,expected", [
    ("conv", 16, 32, 1, 2, {}, 16 * 32 * 9 + 2 * 32),
    ("conv", 16, 32, 2, 1, {"kernel": 5}, 16 * 32 * 5 + 2 * 32),
    ("conv", 16, 32, 1, 2, {"groups": 4}, 16 * 32 * 9 // 4 + 2 * 32),
    ("dwsep", 16, 32, 1, 2, {}, 16 * 9 + 2 * 16 + 16 * 32 + 2 * 32),
    ("mbconv", 8, 8, 1, 2, {"expansion": 6}, (8 * 48 + 96) + (48 * 9 + 96) + (48 * 8 + 16)),
    ("mbconv", 8, 8, 1, 2, {"expansion": 1, "se": True}, (8 * 9 + 16) + (8 * 2 + 2 + 2 * 8 + 8) + (8 * 8 + 16)),
    ("resnet_basic", 16, 16, 1, 2, {}, 2 * (16 * 16 * 9 + 32)),
    ("resnet_basic", 16, 32, 2, 2, {}, (16 * 32 * 9 + 64) + (32 * 32 * 9 + 64) + (16 * 32 + 64)),
    ("resnet_bottleneck", 16, 64, 1, 2, {}, (16 * 16 + 32) + (16 * 16 * 9 + 32) + (16 * 64 + 128) + (16 * 64 + 128)),
    ("identity", 8, 8, 1, 2, {}, 0),
    ("identity", 8, 16, 2, 1, {}, 8 * 16 + 2 * 16),
    ("maxpool", 8, 8, 2, 2, {}, 0),
    ("avgpool", 8, 16, 1, 2, {}, 8 * 16 + 2 * 16),
    ("attention", 8, 8, 1, 2, {"heads": 2}, 2 * 8 + 4 * 8 * 8 + 4 * 8),
])
def test_block_param_count(name, c_in, c_out, stride, dim, opts, expected) -> None:
    assert n_params(make_block(name, c_in, c_out, stride=stride, dim=dim, **opts)) == expected


def test_mbconv_residual_only_when_shape_kept() -> None:
    assert make_block("mbconv", 8, 8).residual
    assert not make_block("mbconv", 8, 8, stride=2).residual
    assert not make_block("mbconv", 8, 16).residual


def test_identity_block_is_identity_when_shape_kept() -> None:
    x = torch.randn(2, 5, 9)
    assert torch.equal(make_block("identity", 5, 5, dim=1)(x), x)


# ---------------------------------------------------------------- cell ops

@pytest.mark.parametrize("name", CELL_OPS)
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_cell_op_shape(name: str, dim: int, stride: int) -> None:
    torch.manual_seed(0)
    for c in (5, 6):  # odd channel counts split unevenly in FactorizedReduce
        m = make_cell_op(name, c, stride=stride, dim=dim)
        x = torch.randn(2, c, *SPATIAL[dim])
        assert m(x).shape == (2, c, *ceil_shape(SPATIAL[dim], stride)), (name, c)


@pytest.mark.parametrize("name", [n for n in CELL_OPS if n not in ("none", "zero", "avg_pool_3x3", "max_pool_3x3")])
def test_cell_op_gradients(name: str) -> None:
    torch.manual_seed(0)
    m = make_cell_op(name, 6, stride=2, dim=2)
    assert_grads(m, m(torch.randn(3, 6, 7, 6)))


def test_cell_op_details() -> None:
    assert n_params(make_cell_op("nor_conv_3x3", 16)) == 16 * 16 * 9 + 32
    assert n_params(make_cell_op("nor_conv_1x1", 16)) == 16 * 16 + 32
    assert n_params(make_cell_op("sep_conv_3x3", 16)) == 2 * (16 * 9 + 16 * 16 + 32)
    assert n_params(make_cell_op("dil_conv_5x5", 16)) == 16 * 25 + 16 * 16 + 32
    assert n_params(make_cell_op("skip_connect", 16, stride=2)) == 16 * 8 * 2 + 32
    order = [type(c).__name__ for c in make_cell_op("nor_conv_3x3", 4).children()]
    assert order == ["ReLU", "Conv2d", "BatchNorm2d"]  # NAS-Bench-201's ReLU-Conv-BN
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(make_cell_op("skip_connect", 4)(x), x)
    zero = make_cell_op("none", 4, stride=2)(x)
    assert zero.shape == (2, 4, 3, 3) and not zero.any()


# ---------------------------------------------------------------- token mixers

@pytest.mark.parametrize("name", MIXERS)
def test_mixer_shape_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    m = make_mixer(name, 16, 10)
    x = torch.randn(3, 10, 16, requires_grad=True)
    out = m(x)
    assert out.shape == (3, 10, 16)
    if n_params(m):
        assert_grads(m, out)
    else:
        out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mixer_details() -> None:
    assert n_params(make_mixer("attention", 16, 10, heads=4)) == 4 * 16 * 16 + 4 * 16
    assert n_params(make_mixer("mixer", 16, 10)) == (10 * 20 + 20) + (20 * 10 + 10)
    assert n_params(make_mixer("pool", 16, 10)) == 0
    with pytest.raises(EvaluationError, match="heads"):
        make_mixer("attention", 10, 4, heads=4)
    for name in ("mixer", "ssm"):  # built for a fixed number of tokens
        with pytest.raises(AssertionError, match="10 tokens"):
            make_mixer(name, 16, 10)(torch.randn(2, 9, 16))


def test_ssm_chunked_scan_matches_sequential_and_is_causal() -> None:
    torch.manual_seed(0)
    m = make_mixer("ssm", 16, 13, state=4, chunk=1)
    x = torch.randn(2, 13, 16)
    reference = m(x)
    for chunk in (5, 13):
        m.chunk = chunk
        assert torch.allclose(m(x), reference, atol=1e-5)
    x2 = x.clone()
    x2[:, 7:] += 1.0
    assert torch.allclose(m(x2)[:, :7], reference[:, :7], atol=1e-6)
    assert not torch.allclose(m(x2)[:, 7:], reference[:, 7:])


# ---------------------------------------------------------------- feed-forwards

@pytest.mark.parametrize("name", FFNS)
def test_ffn_shape_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    m = make_ffn(name, 8, 16)
    x = torch.randn(3, 5, 8)
    out = m(x)
    assert out.shape == x.shape
    assert m(torch.randn(4, 8)).shape == (4, 8)
    if name == "none":
        assert not out.any() and n_params(m) == 0
        return
    if name == "moe":
        m = make_ffn(name, 8, 16, top_k=4)  # every expert active: all of them get gradient
        out = m(x)
    assert_grads(m, out)


def test_ffn_param_counts() -> None:
    d, h = 8, 16
    assert n_params(make_ffn("dense", d, h)) == 2 * d * h + h + d
    assert n_params(make_ffn("glu", d, h)) == 3 * d * h
    assert n_params(make_ffn("lowrank", d, h)) == 2 * 2 * (d + h) + h + d  # rank 0.25 * 8 = 2
    assert n_params(make_ffn("lowrank", d, h, rank=3)) == 2 * 3 * (d + h) + h + d
    assert n_params(make_ffn("moe", d, h, experts=4)) == d * 4 + 4 * (2 * d * h + h + d)
    fff = make_ffn("fff", d, h, depth=2)  # leaf width 16 // 4 = 4
    assert fff.leaf_width == 4
    assert n_params(fff) == 3 * (d + 1) + 4 * (2 * d * 4 + 4 + d)


# ---------------------------------------------------------------- FFF

def decisive_fff(**opts) -> torch.nn.Module:
    torch.manual_seed(0)
    m = make_ffn("fff", 8, 32, depth=3, **opts)
    with torch.no_grad():
        m.node_w.mul_(1e3)  # sigmoid saturates: soft mixture puts ~all weight on the hard path
    return m


def test_fff_hard_inference_equals_soft_argmax_path() -> None:
    m = decisive_fff()
    x = torch.randn(80, 8)
    x = x[m.node_logits(x).abs().min(dim=1).values > 20][:64]  # drop the rare token sitting on a boundary
    assert len(x) == 64
    soft = m.train()(x)
    hard = m.eval()(x)
    assert torch.allclose(hard, soft, atol=1e-4)
    leaves = m.leaf_index(x)
    assert len(set(leaves.tolist())) > 1  # the test routes to several leaves
    with torch.no_grad():  # exactly one leaf computed: its own FFN reproduces the output
        for i in range(0, 64, 9):
            leaf = int(leaves[i])
            h = m.act(x[i] @ m.w1[leaf] + m.b1[leaf])
            assert torch.allclose(hard[i], h @ m.w2[leaf] + m.b2[leaf], atol=1e-5)


def test_fff_hard_routing_follows_soft_argmax() -> None:
    m = decisive_fff()
    x = torch.randn(32, 8)
    mix = m.leaf_mixture(m.node_logits(x))
    assert torch.equal(mix.argmax(dim=1), m.leaf_index(x))
    assert torch.allclose(mix.sum(dim=1), torch.ones(32))


def test_fff_aux_losses_and_master_leaf() -> None:
    torch.manual_seed(0)
    plain = make_ffn("fff", 8, 32, depth=3)
    balanced = make_ffn("fff", 8, 32, depth=3, load_balancing=True, hardening=0.5)
    master = make_ffn("fff", 8, 32, depth=3, master_leaf=True)
    w = plain.leaf_width
    assert n_params(master) - n_params(plain) == 2 * 8 * w + w + 8 + 1
    x = torch.randn(16, 8)
    balanced.train()(x)
    assert balanced.aux_loss is not None and torch.isfinite(balanced.aux_loss) and balanced.aux_loss > 0
    balanced.aux_loss.backward()
    assert balanced.node_w.grad.abs().sum() > 0  # both losses act on the routing neurons
    plain.train()(x)
    assert float(plain.aux_loss) == 0.0
    balanced.eval()(x)
    assert balanced.aux_loss is None
    assert_grads(master.train(), master(x))
    assert plain.hard_macs_per_token() == 3 * 9 + 2 * 8 * w
    depth0 = make_ffn("fff", 8, 32, depth=0)
    assert depth0.eval()(x).shape == (16, 8) and depth0.train()(x).shape == (16, 8)


# ---------------------------------------------------------------- MoE

def test_moe_routing_and_aux_loss() -> None:
    torch.manual_seed(0)
    m = make_ffn("moe", 8, 16, experts=4, top_k=2)
    x = torch.randn(2, 10, 8)
    m.train()(x)
    assert torch.isfinite(m.aux_loss) and m.aux_loss > 0
    gates, probs, top = m.route(x.reshape(-1, 8))
    assert ((gates > 0).sum(dim=1) == 2).all()
    assert torch.allclose(gates.sum(dim=1), torch.ones(20))
    assert torch.equal(gates.gt(0), torch.zeros_like(gates, dtype=torch.bool).scatter(1, top, True))
    m.eval()(x)
    assert m.aux_loss is None
    switch = make_ffn("moe", 8, 16, experts=4, top_k=1)
    g, p, _ = switch.route(x.reshape(-1, 8))
    assert ((g > 0).sum(dim=1) == 1).all() and torch.allclose(g.sum(dim=1), p.max(dim=1).values)
    with pytest.raises(EvaluationError, match="top_k"):
        make_ffn("moe", 8, 16, experts=2, top_k=3)


def test_total_aux_loss_sums_modules() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(make_ffn("moe", 8, 8), make_ffn("fff", 8, 8, depth=2, load_balancing=True))
    net.train()(torch.randn(5, 8))
    total = total_aux_loss(net)
    assert torch.allclose(total, net[0].aux_loss + net[1].aux_loss)
    net.eval()(torch.randn(5, 8))
    assert total_aux_loss(net) is None


# ---------------------------------------------------------------- quantization

def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def test_quant_int8_close_to_fp32() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 9, 9)
    fp = make_block("conv", 8, 16, act="none").eval()
    q8 = quantize(copy.deepcopy(fp), "int8").eval()
    q4 = quantize(copy.deepcopy(fp), "int4").eval()
    ref = fp(x)
    assert relative_error(q8(x), ref) < 0.02
    assert 0 < relative_error(q4(x), ref) < 0.3
    lin = torch.nn.Linear(16, 8)
    ql = quantize(copy.deepcopy(lin), "int8").eval()
    y = torch.randn(5, 16)
    assert relative_error(ql(y), lin(y)) < 0.02


def test_quant_binary_weights_take_two_values_per_channel() -> None:
    torch.manual_seed(0)
    m = make_block("conv", 4, 6, quant="binary")
    w = m.conv.quantized_weight().detach().reshape(6, -1)
    raw = m.conv.inner.weight.detach().reshape(6, -1)
    for row, raw_row in zip(w, raw):
        values = torch.unique(row)
        assert len(values) == 2 and torch.allclose(values, torch.tensor([-1.0, 1.0]) * raw_row.abs().mean())


@pytest.mark.parametrize("mode", ["int8", "int4", "binary"])
def test_quant_gradients_pass_straight_through(mode: str) -> None:
    torch.manual_seed(0)
    m = make_block("mbconv", 4, 4, se=True, quant=mode)
    wrapped = [w for w in m.modules() if isinstance(w, (QuantConv, QuantLinear))]
    layers = [c for c in m.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(wrapped) == len(layers) == 5 and {id(w.inner) for w in wrapped} == {id(c) for c in layers}
    assert_grads(m, m(torch.randn(3, 4, 6, 6)))


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_every_factory_accepts_quant(mode: str) -> None:
    torch.manual_seed(0)
    assert make_block("conv", 4, 4, dim=1, quant=mode)(torch.randn(2, 4, 5)).shape == (2, 4, 5)
    assert make_cell_op("sep_conv_3x3", 4, quant=mode)(torch.randn(2, 4, 5, 5)).shape == (2, 4, 5, 5)
    assert make_mixer("attention", 8, 5, heads=2, quant=mode)(torch.randn(2, 5, 8)).shape == (2, 5, 8)
    for name in ("dense", "moe", "fff"):
        m = make_ffn(name, 8, 16, quant=mode)
        fp = make_ffn(name, 8, 16)
        assert n_params(m) == n_params(fp)  # wrapping adds no parameters
        assert m(torch.randn(3, 8)).shape == (3, 8)
    assert quantize(fp, "fp32") is fp


def test_quantized_moe_and_fff_quantize_their_stacked_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    for name in ("moe", "fff"):
        fp = make_ffn(name, 8, 16).eval()
        q = quantize(copy.deepcopy(fp), "int8").eval()
        assert q.weight_quant == "int8"
        out, ref = q(x), fp(x)
        assert not torch.equal(out, ref) and relative_error(out, ref) < 0.05


def test_observer_uses_running_scale_in_eval() -> None:
    torch.manual_seed(0)
    m = quantize(torch.nn.Linear(4, 4), "int8")
    m.train()(torch.randn(8, 4))
    seen = float(m.observer.running_absmax)
    assert seen > 0
    m.eval()(100 * torch.randn(8, 4))  # eval clips to the observed range instead of re-scaling
    assert float(m.observer.running_absmax) == seen


# ---------------------------------------------------------------- registry errors

def test_unknown_names_and_options() -> None:
    with pytest.raises(UnknownNameError, match="mbconv"):
        make_block("mbconvv", 4, 4)
    with pytest.raises(UnknownNameError, match="sep_conv_3x3"):
        make_cell_op("sep_conv_7x7", 4)
    with pytest.raises(UnknownNameError, match="ssm"):
        make_mixer("lstm", 8, 4)
    with pytest.raises(UnknownNameError, match="fff"):
        make_ffn("sparse", 8, 4)
    with pytest.raises(EvaluationError, match="'kernal'"):
        make_block("conv", 4, 4, kernal=3)
    with pytest.raises(EvaluationError, match="'heads'"):
        make_block("conv", 4, 4, heads=2)
    with pytest.raises(EvaluationError, match="odd"):
        make_block("conv", 4, 4, kernel=4)
    with pytest.raises(EvaluationError, match="groups"):
        make_block("conv", 4, 6, groups=4)
    with pytest.raises(EvaluationError, match="quant"):
        make_ffn("dense", 4, 4, quant="int2")
    with pytest.raises(EvaluationError, match="activation"):
        make_ffn("glu", 4, 4, act="relu")
    with pytest.raises(EvaluationError, match="true or false"):
        make_block("mbconv", 4, 4, se="yes")
    with pytest.raises(EvaluationError, match="dim"):
        make_block("conv", 4, 4, dim=3)
    with pytest.raises(EvaluationError, match="c_out"):
        make_block("conv", 4, 0)


# ---------------------------------------------------------------- export

def _export_or_skip(m: torch.nn.Module, x: torch.Tensor):
    """torch.export, skipping only where this torch build has no usable torch.export."""
    try:
        export = torch.export.export
    except AttributeError:  # pragma: no cover - torch without torch.export
        pytest.skip("this torch has no torch.export")
    return export(m, (x,))


@pytest.mark.parametrize("case", ["fff", "fff_master_int8", "moe", "conv_int8"])
def test_torch_export(case: str) -> None:
    torch.manual_seed(0)
    m, x = {
        "fff": (make_ffn("fff", 8, 32, depth=3), torch.randn(6, 8)),
        "fff_master_int8": (make_ffn("fff", 8, 32, depth=2, master_leaf=True, quant="int8"), torch.randn(6, 8)),
        "moe": (make_ffn("moe", 8, 16), torch.randn(2, 3, 8)),
        "conv_int8": (make_block("conv", 4, 8, quant="int8"), torch.randn(2, 4, 6, 6)),
    }[case]
    m.train()(x)  # let observers see data
    m.eval()
    ep = _export_or_skip(m, x)
    assert torch.allclose(ep.module()(x), m(x), atol=1e-6)


def test_onnx_export_of_quantized_fff_and_conv() -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = torch.nn.Sequential(make_block("conv", 4, 8, dim=1, quant="int8"), torch.nn.Flatten(),
                              make_ffn("fff", 48, 32, depth=2, quant="int4"))
    x = torch.randn(3, 4, 6)
    net.train()(x)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert torch.allclose(torch.from_numpy(out), net(x), atol=1e-4)


def _fx_cases():
    yield from ((f"block:{n}", lambda n=n: make_block(n, 4, 8, stride=2, quant="int8"), (2, 4, 7, 6)) for n in BLOCKS)
    yield from ((f"cell:{n}", lambda n=n: make_cell_op(n, 6, stride=2), (2, 6, 7, 6)) for n in CELL_OPS)
    yield from ((f"mixer:{n}", lambda n=n: make_mixer(n, 16, 10), (2, 10, 16)) for n in MIXERS)
    yield from ((f"ffn:{n}", lambda n=n: make_ffn(n, 16, 32, quant="int4"), (2, 10, 16)) for n in FFNS)


def test_eval_modules_trace_symbolically() -> None:
    """The standalone exporter's readable route is torch.fx; every eval-mode op must trace."""
    torch.manual_seed(0)
    for name, make, shape in _fx_cases():
        m, x = make(), torch.randn(*shape)
        m.train()(x)
        m.eval()
        traced = torch.fx.symbolic_trace(m)
        assert torch.allclose(traced(x), m(x), atol=1e-6), name


# ---------------------------------------------------------------- the exporter's layout rule

ALLOWED_IMPORTS = {"__future__", "math", "typing", "torch", "torch.nn", "torch.nn.functional"}


def test_ops_sources_follow_the_standalone_export_rule() -> None:
    seen: dict[str, str] = {}
    for path in sorted(OPS_DIR.glob("*.py")):
        if path.name in ("registry.py", "__init__.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert all(a.name in ALLOWED_IMPORTS for a in node.names), (path.name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 or node.module in ALLOWED_IMPORTS, (path.name, node.module)
                assert node.lineno == node.end_lineno, f"{path.name}: multi-line import"
            elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                assert node.name not in seen, f"{node.name} defined in {seen.get(node.name)} and {path.name}"
                seen[node.name] = path.name
            elif isinstance(node, ast.Assign):
                assert all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets), path.name
            else:
                assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), (path.name, ast.dump(node))
