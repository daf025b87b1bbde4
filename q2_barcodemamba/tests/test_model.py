"""Tests of the BarcodeMamba+ network (pure PyTorch path, CPU)."""
import os
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from q2_barcodemamba.core import kernels
from q2_barcodemamba.core.config import ModelConfig, preset
from q2_barcodemamba.core.model import (Backbone, BarcodeMambaNet, Block,
                                        GatedMLP, Mamba2Mixer, RMSNormGated,
                                        masked_mean)
from q2_barcodemamba.core.ssd import ssd_scan_ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def small_cfg(**kw):
    base = dict(vocab_size=50, d_model=16, n_layers=2, d_state=8, d_conv=4,
                expand=2, headdim=8, ngroups=1, chunk_size=8,
                d_intermediate=32, dropout=0.1)
    return ModelConfig(**{**base, **kw}).validate()


def randomize_(module, seed=0):
    """Non-trivial random weights everywhere (incl. norms, D, dt_bias)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.empty(p.shape).uniform_(1, 16, generator=gen)))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def mixer_recurrent(m: Mamba2Mixer, u):
    """Whole mixer evaluated step by step: explicit conv window + ssd_scan_ref."""
    Bsz, L, _ = u.shape
    E, G, N, H, P, W = m.d_inner, m.ngroups, m.d_state, m.nheads, m.headdim, m.d_conv
    zxbcdt = u @ m.in_proj.weight.T
    z = zxbcdt[..., :E]
    xBC = zxbcdt[..., E:E + m.conv_dim]
    dt = zxbcdt[..., E + m.conv_dim:]
    w = m.conv1d.weight[:, 0, :]                         # (conv_dim, W)
    conv = []
    for t in range(L):
        acc = m.conv1d.bias.expand(Bsz, -1).clone()
        for j in range(W):                               # tap j sees x[t - (W-1) + j]
            s = t - (W - 1) + j
            if s >= 0:
                acc = acc + xBC[:, s] * w[:, j]
        conv.append(acc)
    xBC = F.silu(torch.stack(conv, dim=1))
    x = xBC[..., :E].reshape(Bsz, L, H, P)
    B = xBC[..., E:E + G * N].reshape(Bsz, L, G, N)
    C = xBC[..., E + G * N:].reshape(Bsz, L, G, N)
    dt = F.softplus(dt + m.dt_bias)
    A = -torch.exp(m.A_log)
    y = ssd_scan_ref(x, dt, A, B, C, D=m.D).reshape(Bsz, L, E)
    g = y * F.silu(z)
    gs = E // G
    g = g.reshape(Bsz, L, G, gs)
    g = g / torch.sqrt((g ** 2).mean(-1, keepdim=True) + m.norm.eps)
    y = g.reshape(Bsz, L, E) * m.norm.weight
    return y @ m.out_proj.weight.T


def test_mixer_output_shape():
    torch.manual_seed(0)
    m = Mamba2Mixer(small_cfg())
    assert m(torch.randn(3, 21, 16)).shape == (3, 21, 16)


@pytest.mark.parametrize("ngroups,L,chunk", [(1, 19, 8), (2, 30, 8), (2, 5, 64)])
def test_mixer_matches_recurrent_evaluation(ngroups, L, chunk):
    torch.manual_seed(0)
    m = Mamba2Mixer(small_cfg(ngroups=ngroups, chunk_size=chunk))
    randomize_(m, seed=1)
    u = torch.randn(2, L, 16)
    with torch.no_grad():
        assert_close(m(u), mixer_recurrent(m, u), rtol=1e-4, atol=1e-4)


def test_mixer_is_causal():
    torch.manual_seed(0)
    m = Mamba2Mixer(small_cfg())
    randomize_(m, seed=2)
    u = torch.randn(1, 25, 16)
    u2 = u.clone()
    u2[:, 13] += 1.0
    with torch.no_grad():
        y, y2 = m(u), m(u2)
    assert_close(y[:, :13], y2[:, :13], rtol=0, atol=0)
    assert not torch.allclose(y[:, 13:], y2[:, 13:])


def test_backbone_is_causal_in_tokens():
    torch.manual_seed(0)
    net = Backbone(small_cfg())
    tok = torch.randint(1, 50, (2, 30))
    tok2 = tok.clone()
    tok2[:, 17] = (tok[:, 17] % 49) + 1
    with torch.no_grad():
        h, h2 = net(tok), net(tok2)
    assert_close(h[:, :17], h2[:, :17], rtol=0, atol=0)
    assert not torch.allclose(h[:, 17], h2[:, 17])


def test_right_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    cfg = small_cfg(chunk_size=8)
    model = BarcodeMambaNet(cfg, [3, 5]).eval()
    tok = torch.randint(1, 50, (2, 13))
    padded = torch.cat([tok, torch.zeros(2, 22, dtype=torch.long)], dim=1)
    mask = padded != 0
    with torch.no_grad():
        assert_close(model.backbone(padded)[:, :13], model.backbone(tok),
                     rtol=1e-5, atol=1e-5)
        assert_close(model.embed(padded, mask), model.embed(tok),
                     rtol=1e-5, atol=1e-5)
        for a, b in zip(model(padded, mask), model(tok)):
            assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_state_dict_matches_mamba_ssm_layout():
    cfg = small_cfg(ngroups=2)
    m = Mamba2Mixer(cfg)
    E, G, N, H = cfg.d_inner, cfg.ngroups, cfg.d_state, cfg.nheads
    conv_dim = E + 2 * G * N
    expected = {
        "in_proj.weight": (2 * E + 2 * G * N + H, cfg.d_model),
        "conv1d.weight": (conv_dim, 1, cfg.d_conv),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (H,),
        "A_log": (H,),
        "D": (H,),
        "norm.weight": (E,),
        "out_proj.weight": (cfg.d_model, E),
    }
    sd = m.state_dict()
    assert set(sd) == set(expected)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


def test_mixer_initialisation():
    torch.manual_seed(0)
    m = Mamba2Mixer(small_cfg(d_model=64, headdim=4))   # 32 heads
    dt = F.softplus(m.dt_bias)
    assert ((dt >= 1e-3 * 0.999) & (dt <= 1e-1 * 1.001)).all()
    A = torch.exp(m.A_log)
    assert ((A >= 1) & (A <= 16)).all()
    assert torch.equal(m.D, torch.ones_like(m.D))
    assert all(getattr(p, "_no_weight_decay", False)
               for p in (m.dt_bias, m.A_log, m.D))


def test_rmsnorm_gated_groups():
    torch.manual_seed(0)
    norm = RMSNormGated(8, eps=1e-6, group_size=4)
    x, z = torch.randn(3, 8), torch.randn(3, 8)
    h = (x * F.silu(z)).reshape(3, 2, 4)
    ref = (h / h.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()).reshape(3, 8)
    assert_close(norm(x, z), ref)
    full = RMSNormGated(8, eps=1e-6)
    assert_close(full(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())


def test_gated_mlp_and_block_without_mlp():
    torch.manual_seed(0)
    mlp = GatedMLP(8, 12)
    x = torch.randn(2, 3, 8)
    y, g = (x @ mlp.fc1.weight.T).chunk(2, -1)
    assert_close(mlp(x), (y * F.silu(g)) @ mlp.fc2.weight.T)
    blk = Block(small_cfg(d_intermediate=0))
    assert blk.mlp is None and blk.norm2 is None
    assert blk(torch.randn(2, 9, 16)).shape == (2, 9, 16)
    assert not any(k.startswith(("mlp", "norm2")) for k in blk.state_dict())


def test_masked_mean():
    h = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(h, mask)
    assert_close(out[0], h[0, :2].mean(0))
    assert_close(out[1], torch.zeros(4))   # empty mask: zeros, not NaN


def test_net_forward_shapes_and_determinism():
    torch.manual_seed(0)
    n_classes = [2, 7, 11, 30]
    model = BarcodeMambaNet(small_cfg(), n_classes)
    tok = torch.randint(1, 50, (4, 23))
    tok[2, 15:] = 0
    mask = tok != 0
    logits = model(tok, mask)
    assert [tuple(t.shape) for t in logits] == [(4, n) for n in n_classes]
    assert model.embed(tok, mask).shape == (4, 16)
    model.eval()
    with torch.no_grad():
        a, b = model(tok, mask), model(tok, mask)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    # the loss back-propagates into every parameter
    model.train()
    sum(F.cross_entropy(lg, torch.zeros(4, dtype=torch.long))
        for lg in model(tok, mask)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_param_groups_cover_each_parameter_once():
    model = BarcodeMambaNet(small_cfg(), [3, 4])
    groups = model.param_groups(0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    for name, p in model.named_parameters():
        should = p.dim() >= 2 and not name.endswith(("dt_bias", "A_log", "D"))
        assert (id(p) in decay) == should, name
    torch.optim.AdamW(groups, lr=1e-3)   # accepted by the optimiser


def test_gpt2_style_init():
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=1024)
    model = BarcodeMambaNet(cfg, [10])
    std_proj = 0.02 / (2 * cfg.n_layers) ** 0.5
    for name, p in model.named_parameters():
        if name.endswith(("out_proj.weight", "fc2.weight")):
            assert abs(p.std().item() - std_proj) < 0.2 * std_proj, name
        elif name.endswith(("in_proj.weight", "fc1.weight", "embedding.weight")):
            assert abs(p.std().item() - 0.02) < 0.002, name
    assert torch.equal(model.heads[0].bias, torch.zeros(10))


def test_tiny_parameter_count():
    """tiny preset (vocab 1024): 547,760 backbone params (0.5M-0.6M)."""
    model = BarcodeMambaNet(preset("tiny", vocab_size=1024), [10, 100])
    n_heads = (128 + 1) * (10 + 100)
    n_backbone = model.num_parameters() - n_heads
    assert n_backbone == sum(p.numel() for p in model.backbone.parameters())
    assert 500_000 <= n_backbone <= 600_000
    assert n_backbone == 547_760


def test_import_does_not_load_cuda_kernels():
    code = (
        "import sys, torch\n"
        "import q2_barcodemamba.core.io, q2_barcodemamba.core.classifier\n"
        "from q2_barcodemamba.core.config import preset\n"
        "from q2_barcodemamba.core.model import BarcodeMambaNet\n"
        "m = BarcodeMambaNet(preset('tiny', vocab_size=64), [3])\n"
        "m(torch.randint(1, 64, (2, 10)))\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in "
        "('mamba_ssm', 'triton', 'causal_conv1d', 'qiime2', 'q2_types')]\n"
        "assert not bad, bad\n"
        "print('ok')\n")
    env = {**os.environ,
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_kernel_selection_falls_back(monkeypatch):
    kernels.mamba_kernels.cache_clear()
    try:
        monkeypatch.setitem(sys.modules, "mamba_ssm", None)   # ImportError
        assert kernels.mamba_kernels() is None
        assert not kernels.kernels_available()
        kernels.mamba_kernels.cache_clear()

        def broken(name):
            raise RuntimeError("CUDA driver too old")
        monkeypatch.setattr(kernels.importlib, "import_module", broken)
        assert kernels.mamba_kernels() is None
        kernels.mamba_kernels.cache_clear()

        fake = {"mamba_ssm.ops.triton.ssd_combined":
                types.SimpleNamespace(mamba_chunk_scan_combined="scan"),
                "causal_conv1d": types.SimpleNamespace(causal_conv1d_fn="conv")}
        monkeypatch.setattr(kernels.importlib, "import_module", fake.__getitem__)
        k = kernels.mamba_kernels()
        assert k.mamba_chunk_scan_combined == "scan"
        assert k.causal_conv1d_fn == "conv"
        assert kernels.kernels_available()
    finally:
        kernels.mamba_kernels.cache_clear()
    assert "pip install" in kernels.KERNEL_INSTALL_HINT


def test_cpu_forward_never_asks_for_kernels(monkeypatch):
    def boom():
        raise AssertionError("kernels requested on CPU")
    monkeypatch.setattr(kernels, "mamba_kernels", boom)
    m = Mamba2Mixer(small_cfg())
    assert m(torch.randn(1, 5, 16)).shape == (1, 5, 16)


def test_triton_only_mamba_ssm_is_found(tmp_path, monkeypatch):
    """mamba-ssm built with MAMBA_SKIP_CUDA_BUILD has no selective_scan_cuda
    and its package __init__ fails; the SSD module must still load, and
    causal-conv1d is optional on its own."""
    pkg = tmp_path / "mamba_ssm"
    (pkg / "ops" / "triton").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import selective_scan_cuda  # Mamba-1 CUDA extension\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "ssd_combined.py").write_text(
        "def mamba_chunk_scan_combined(*a, **k):\n    return 'triton-scan'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("mamba_ssm")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "causal_conv1d", None)
    kernels.mamba_kernels.cache_clear()
    try:
        k = kernels.mamba_kernels()
        assert k is not None
        assert k.mamba_chunk_scan_combined() == "triton-scan"
        assert k.causal_conv1d_fn is None
        assert kernels.kernels_available()
        assert "Triton" in kernels.describe()
        assert "causal conv: PyTorch" in kernels.describe()
        kernels.mamba_kernels.cache_clear()
        monkeypatch.setenv("Q2_BARCODEMAMBA_KERNELS", "0")
        assert kernels.mamba_kernels() is None
    finally:
        kernels.mamba_kernels.cache_clear()
        for name in [m for m in sys.modules if m.startswith("mamba_ssm")]:
            sys.modules.pop(name, None)


def _cuda_kernels_present() -> bool:
    if not torch.cuda.is_available():
        return False
    kernels.mamba_kernels.cache_clear()
    return kernels.kernels_available()


@pytest.mark.skipif(not _cuda_kernels_present(),
                    reason="needs a CUDA GPU and mamba-ssm (pip install "
                           "'q2-barcodemamba[cuda]')")
@pytest.mark.parametrize("name", ["tiny", "paper-12m"])
def test_fused_kernels_match_the_pytorch_path(name):
    """Same weights, both paths: the mamba-ssm Triton scan (and
    causal-conv1d when installed) against the pure PyTorch SSD scan, on
    right-padded batches, fp32 with TF32 off. Tolerances of docs/gpu.md:
    1e-4 forward and 5e-3 gradients, relative to the largest value."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    net = BarcodeMambaNet(preset(name, vocab_size=1024), [60, 900]).cuda()
    net.dropout.p = 0.0
    for L in (37, 128, 300):
        lengths = torch.randint(L // 2, L + 1, (16,))
        lengths[0] = L
        tok = torch.randint(4, 1024, (16, L), device="cuda")
        mask = torch.arange(L, device="cuda")[None] < lengths.cuda()[:, None]
        tok = tok.masked_fill(~mask, 0)
        out = {}
        for on in (False, True):
            for m in net.modules():
                if hasattr(m, "use_kernels"):
                    m.use_kernels = on
            net.zero_grad(set_to_none=True)
            logits = net(tok, mask)
            (logits[0].square().mean()
             + logits[1].logsumexp(1).mean()).backward()
            out[on] = ([lg.detach().float() for lg in logits],
                       {k: p.grad.detach().float().clone()
                        for k, p in net.named_parameters()
                        if p.grad is not None})
        (ref_l, ref_g), (ker_l, ker_g) = out[False], out[True]
        for a, b in zip(ref_l, ker_l):
            rel = float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))
            assert rel < 1e-4, (name, L, "logits", rel)
        assert set(ref_g) == set(ker_g)
        for k in ref_g:
            rel = float((ref_g[k] - ker_g[k]).abs().max()
                        / ref_g[k].abs().max().clamp(min=1e-12))
            assert rel < 5e-3, (name, L, k, rel)
