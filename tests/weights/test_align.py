"""The structural mapper on state dicts alone: reordering inside blocks, reshapes, order across blocks,
ambiguity, integer buffers, checkpoint wrappers. No spec is compiled here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archc.diagnostics import CheckpointError
from archc.weights import compare_outputs, load_source, map_state_dict
from tests.weights.references import ArchcRepVgg, TimmRepVgg, randomized


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sd(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """A state dict in keyword order; '__' in a name stands for '.'."""
    return {k.replace("__", "."): torch.randn(s) if s else torch.tensor(3) for k, s in shapes.items()}


def test_conv1x1_maps_onto_linear_by_reshape() -> None:
    src = _sd(head__0__weight=(10, 32, 1, 1), head__0__bias=(10,))
    tgt = _sd(fc__weight=(10, 32), fc__bias=(10,))
    wm = map_state_dict(src, tgt)
    assert wm.complete
    assert wm.mapping == {"fc.weight": "head.0.weight", "fc.bias": "head.0.bias"}
    assert wm.reshaped == ["fc.weight"]
    out = wm.apply(src, tgt)
    assert out["fc.weight"].shape == (10, 32) and torch.equal(out["fc.weight"], src["head.0.weight"].reshape(10, 32))


def test_layer_scale_first_in_block_pairs_with_gamma_last() -> None:
    # timm: the block's own gamma first; here: the layer scale is the last module of the block
    src = _sd(blocks__0__gamma=(8,), blocks__0__conv_dw__weight=(8, 1, 7, 7), blocks__0__conv_dw__bias=(8,),
              blocks__0__norm__weight=(8,), blocks__0__norm__bias=(8,), blocks__0__fc__weight=(8, 8), blocks__0__fc__bias=(8,))
    tgt = _sd(blocks__0__dw__weight=(8, 1, 7, 7), blocks__0__dw__bias=(8,), blocks__0__mlp__norm__weight=(8,),
              blocks__0__mlp__norm__bias=(8,), blocks__0__mlp__fc__weight=(8, 8), blocks__0__mlp__fc__bias=(8,),
              blocks__0__mlp__gamma__gamma=(8,))
    wm = map_state_dict(src, tgt)
    assert wm.complete, wm.problems()
    assert wm.mapping["blocks.0.mlp.gamma.gamma"] == "blocks.0.gamma"
    assert wm.mapping["blocks.0.mlp.norm.weight"] == "blocks.0.norm.weight"
    assert wm.mapping["blocks.0.dw.bias"] == "blocks.0.conv_dw.bias"
    assert wm.reordered == ["blocks.0.mlp.gamma.gamma"]


def test_repvgg_identity_bn_first_maps_by_branch_signature() -> None:
    """timm registers the identity BN first, the spec's block has it last: three BNs of one shape, told
    apart by the branch they belong to (conv 3×3 + BN, conv 1×1 + BN, BN alone)."""
    args = ([1, 2, 2], [8, 16, 16], 8, 5)
    src = randomized(TimmRepVgg(*args), 3)
    tgt = ArchcRepVgg(*args)
    assert next(iter(src.state_dict())).endswith("identity.weight") is False  # stem has no identity branch
    assert list(src.state_dict())[12].startswith("stages.0.0.conv_kxk")
    wm = map_state_dict(src.state_dict(), tgt.state_dict())
    assert wm.complete, wm.problems()
    assert wm.mapping["stages.1.blocks.1.rbr_identity.running_var"] == "stages.1.1.identity.running_var"
    assert wm.mapping["stages.1.blocks.1.rbr_dense.bn.weight"] == "stages.1.1.conv_kxk.bn.weight"
    assert wm.reordered  # the identity BNs moved
    err = compare_outputs(src, src.state_dict(), tgt, wm.apply(src.state_dict(), tgt.state_dict()), [(2, 3, 16, 16)])
    assert err <= 1e-12


def test_reordered_blocks_of_different_shapes_are_refused() -> None:
    """Order across blocks is the structure: a checkpoint whose stage 2 comes before stage 1 does not map."""
    src = _sd(stages__0__conv__weight=(8, 3, 3, 3), stages__0__conv__bias=(8,),
              stages__2__conv__weight=(32, 16, 3, 3), stages__2__conv__bias=(32,),
              stages__1__conv__weight=(16, 8, 3, 3), stages__1__conv__bias=(16,))
    tgt = _sd(s__0__c__weight=(8, 3, 3, 3), s__0__c__bias=(8,), s__1__c__weight=(16, 8, 3, 3), s__1__c__bias=(16,),
              s__2__c__weight=(32, 16, 3, 3), s__2__c__bias=(32,))
    wm = map_state_dict(src, tgt)
    assert not wm.complete
    lost = {leaf.key for leaf, _ in wm.unmatched_target}
    assert lost == {"s.1.c.weight", "s.1.c.bias", "s.2.c.weight", "s.2.c.bias"}
    assert all("out of order" in why for _, why in wm.unmatched_target)
    # in the right order the same tensors map
    ok = {k: src[k] for k in ["stages.0.conv.weight", "stages.0.conv.bias", "stages.1.conv.weight", "stages.1.conv.bias",
                              "stages.2.conv.weight", "stages.2.conv.bias"]}
    assert map_state_dict(ok, tgt).complete


def test_tokens_that_do_not_decide_are_ambiguous() -> None:
    # inside one block: weight and bias swap places (tokens decide), two unnamed tensors remain: not guessed
    src = _sd(b__0__conv__weight=(4, 4, 3, 3), b__0__weight=(4,), b__0__p=(4,), b__0__q=(4,), b__0__bias=(4,))
    tgt = _sd(b__0__c__weight=(4, 4, 3, 3), b__0__bias=(4,), b__0__u=(4,), b__0__v=(4,), b__0__weight=(4,))
    wm = map_state_dict(src, tgt)
    assert not wm.complete
    assert len(wm.ambiguous) == 1
    xs, ys = wm.ambiguous[0]
    assert {x.key for x in xs} == {"b.0.p", "b.0.q"} and {y.key for y in ys} == {"b.0.u", "b.0.v"}
    assert wm.mapping["b.0.weight"] == "b.0.weight" and wm.mapping["b.0.bias"] == "b.0.bias"
    assert any("ambiguous" in line for line in wm.problems())


def test_dropped_tensor_is_named() -> None:
    full = _sd(a__conv__weight=(8, 3, 3, 3), a__bn__weight=(8,), a__bn__bias=(8,), a__bn__running_mean=(8,),
               a__bn__running_var=(8,), b__conv__weight=(8, 8, 3, 3), b__bn__weight=(8,), b__bn__bias=(8,),
               b__bn__running_mean=(8,), b__bn__running_var=(8,), fc__weight=(4, 8), fc__bias=(4,))
    src = {k.replace("a.", "x.").replace("b.", "y."): v for k, v in full.items() if k != "a.bn.running_mean"}
    wm = map_state_dict(src, full)
    assert [leaf.key for leaf, _ in wm.unmatched_target] == ["a.bn.running_mean"]
    assert not wm.unmatched_source and not wm.ambiguous
    assert wm.mapping["b.bn.running_var"] == "y.bn.running_var"


def test_integer_buffers_follow_their_module() -> None:
    tgt = _sd(bn__weight=(4,), bn__bias=(4,), bn__running_mean=(4,), bn__running_var=(4,), bn__num_batches_tracked=())
    src = {k.replace("bn.", "norm."): v for k, v in tgt.items()}
    src["norm.num_batches_tracked"] = torch.tensor(41)
    src["attn.index"] = torch.arange(5)  # a derived index table: ignored
    wm = map_state_dict(src, tgt)
    assert wm.complete and wm.carried == {"bn.num_batches_tracked": "norm.num_batches_tracked"}
    assert wm.ignored == ["attn.index"]
    assert int(wm.apply(src, tgt)["bn.num_batches_tracked"]) == 41
    del src["norm.num_batches_tracked"]
    wm = map_state_dict(src, tgt)
    assert wm.complete and wm.filled == ["bn.num_batches_tracked"]
    assert int(wm.apply(src, tgt)["bn.num_batches_tracked"]) == int(tgt["bn.num_batches_tracked"])


@pytest.mark.parametrize("prefix", ["", "module."])
def test_flat_and_nested_module_trees_meet(prefix: str) -> None:
    """torchvision keeps conv1/bn1 at the top; a spec groups them in a stem: one module against several
    (and DistributedDataParallel's 'module.' wraps everything in one more)."""
    src = _sd(conv1__weight=(8, 3, 7, 7), bn1__weight=(8,), bn1__bias=(8,), fc__weight=(4, 8), fc__bias=(4,))
    src = {prefix + k: v for k, v in src.items()}
    tgt = _sd(stem__conv__weight=(8, 3, 7, 7), stem__bn__weight=(8,), stem__bn__bias=(8,), head__fc__weight=(4, 8),
              head__fc__bias=(4,))
    wm = map_state_dict(src, tgt)
    assert wm.complete and not wm.reordered
    assert wm.mapping == {k: prefix + v for k, v in {
        "stem.conv.weight": "conv1.weight", "stem.bn.weight": "bn1.weight", "stem.bn.bias": "bn1.bias",
        "head.fc.weight": "fc.weight", "head.fc.bias": "fc.bias"}.items()}


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "nested"])
def test_checkpoint_wrappers(wrap: str, tmp_path: Path) -> None:
    sd = _sd(fc__weight=(2, 3), fc__bias=(2,))
    obj = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd, "optimizer": {"lr": 0.1}},
           "nested": {"model": {"state_dict": sd}, "args": "x"}}[wrap]
    path = tmp_path / "c.pth"
    torch.save(obj, path)
    got = load_source(str(path))
    assert list(got) == ["fc.weight", "fc.bias"] and torch.equal(got["fc.bias"], sd["fc.bias"])


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "c.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, not a tensor"):
        load_source(str(path))


class _TwoHeads(torch.nn.Module):
    """Two conv + BN branches of equal shapes (SEPC's cls / loc convs); ``names`` gives each role's
    attribute names, ``order`` the roles in registration order (the state dict's order)."""

    def __init__(self, names: dict[str, tuple[str, str]], order: tuple[str, str], c: int = 4) -> None:
        super().__init__()
        self.names = names
        for role in order:
            self.add_module(names[role][0], torch.nn.Conv2d(c, c, 3, padding=1))
        for role in order:
            self.add_module(names[role][1], torch.nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for role in ("cls", "loc"):
            conv, bn = (getattr(self, n) for n in self.names[role])
            out.append(torch.relu(bn(conv(x))))
        return out[0], out[1] * 2.0


_SPEC_NAMES = {"cls": ("cconv", "cbn"), "loc": ("lconv", "lbn")}


_WORD_NAMES = {"cls": ("cls", "cls_bn"), "loc": ("loc", "loc_bn")}


@pytest.mark.parametrize(("src_names", "tgt_names"), [
    (_SPEC_NAMES, _SPEC_NAMES),  # the same names, listed the other way (an mmdetection SEPC neck vs the spec's module)
    ({"cls": ("c_conv", "c_bn"), "loc": ("L_CONV", "l_bn")}, _SPEC_NAMES),  # separators and case: the same name
    ({"cls": ("cls_conv", "cls_norm"), "loc": ("loc_conv", "loc_norm")}, _WORD_NAMES),  # a distinctive word in common
], ids=["equal", "normalized", "words"])
def test_names_settle_swapped_siblings_of_equal_shapes(src_names: dict[str, tuple[str, str]],
                                                      tgt_names: dict[str, tuple[str, str]]) -> None:
    """Shapes cannot tell the two branches apart and the orders differ: the names decide, and the mapped
    weights compute what the source computes (the order pairing swaps cls and loc)."""
    src = randomized(_TwoHeads(src_names, ("cls", "loc")), 7)
    for prefix in ("", "neck.1."):
        sd = {prefix + k: v for k, v in src.state_dict().items()}
        tgt = _TwoHeads(tgt_names, ("loc", "cls"))
        wm = map_state_dict(sd, tgt.state_dict())
        assert wm.complete, wm.problems()
        for role in ("cls", "loc"):
            for s_name, t_name in zip(src_names[role], tgt_names[role]):
                assert wm.mapping[f"{t_name}.weight"] == f"{prefix}{s_name}.weight"
        assert len(wm.reordered) == 6  # one branch's conv weight, bias and BN weight, bias, mean, var moved
        state = wm.apply(sd, tgt.state_dict())
        assert compare_outputs(src, src.state_dict(), tgt, state, [(2, 4, 6, 6)]) <= 1e-12
    # the pairing in order (what the names overrule) computes something else: the test can fail
    swapped = {t: sd[s] for t, s in zip(tgt.state_dict(), sd)}
    assert compare_outputs(src, src.state_dict(), tgt, swapped, [(2, 4, 6, 6)]) > 1e-3


def test_names_settle_siblings_inside_a_block_and_single_tensors() -> None:
    # inside a block (pairing by signature) and between a module's own unnamed tensors
    src = _sd(b__0__gamma=(4,), b__0__cconv__weight=(4, 4, 3, 3), b__0__lconv__weight=(4, 4, 3, 3),
              b__0__p=(4, 2), b__0__q=(4, 2))
    tgt = _sd(b__0__lconv__weight=(4, 4, 3, 3), b__0__cconv__weight=(4, 4, 3, 3), b__0__q=(4, 2), b__0__p=(4, 2),
              b__0__ls__gamma=(4,))
    wm = map_state_dict(src, tgt)
    assert wm.complete, wm.problems()
    assert {k: v for k, v in wm.mapping.items()} == {
        "b.0.lconv.weight": "b.0.lconv.weight", "b.0.cconv.weight": "b.0.cconv.weight", "b.0.q": "b.0.q",
        "b.0.p": "b.0.p", "b.0.ls.gamma": "b.0.gamma"}
    # the last one left is settled by elimination
    wm = map_state_dict(_sd(cconv__weight=(4, 4, 3, 3), lconv__weight=(4, 4, 3, 3)),
                        _sd(lconv__weight=(4, 4, 3, 3), head__weight=(4, 4, 3, 3)))
    assert wm.complete and wm.mapping == {"lconv.weight": "lconv.weight", "head.weight": "cconv.weight"}


def test_positions_and_silent_names_keep_the_order() -> None:
    """List positions are no names, and names that say nothing (or agree) leave the order pairing."""
    src = _sd(blocks__1__conv__weight=(4, 4, 3, 3), blocks__0__conv__weight=(4, 4, 3, 3))
    tgt = _sd(s__0__c__weight=(4, 4, 3, 3), s__1__c__weight=(4, 4, 3, 3))
    wm = map_state_dict(src, tgt)
    assert wm.complete and wm.mapping == {"s.0.c.weight": "blocks.1.conv.weight", "s.1.c.weight": "blocks.0.conv.weight"}
    wm = map_state_dict(_sd(conv1__weight=(4, 4, 3, 3), conv2__weight=(4, 4, 3, 3)),
                        _sd(conv_a__weight=(4, 4, 3, 3), conv_b__weight=(4, 4, 3, 3)))
    assert wm.complete and wm.mapping == {"conv_a.weight": "conv1.weight", "conv_b.weight": "conv2.weight"}


@pytest.mark.parametrize("case", ["partly_named", "words_conflict", "in_block", "tensors"])
def test_names_against_the_order_that_do_not_settle_it_are_refused(case: str) -> None:
    """The names say the order is wrong but do not say what is right: the whole group is ambiguous."""
    w = (4, 4, 3, 3)
    if case == "partly_named":  # cconv/lconv cross; the two others have no names in common
        src = _sd(cconv__weight=w, lconv__weight=w, p__weight=w, q__weight=w)
        tgt = _sd(lconv__weight=w, cconv__weight=w, u__weight=w, v__weight=w)
    elif case == "words_conflict":  # cls_reg shares a word with both: no unique pairing, and cls_conv ↔ reg in order
        src = _sd(cls_conv__weight=w, reg_conv__weight=w, cls_reg_conv__weight=w)
        tgt = _sd(reg__weight=w, cls__weight=w, other__weight=w)
    elif case == "in_block":
        src = _sd(b__0__gamma=(4,), b__0__cconv__weight=w, b__0__lconv__weight=w, b__0__p__weight=w, b__0__q__weight=w)
        tgt = _sd(b__0__lconv__weight=w, b__0__cconv__weight=w, b__0__u__weight=w, b__0__v__weight=w,
                  b__0__ls__gamma=(4,))
    else:
        src = _sd(b__0__p=(4, 2), b__0__q=(4, 2), b__0__r=(4, 2), b__0__s=(4, 2))
        tgt = _sd(b__0__q=(4, 2), b__0__p=(4, 2), b__0__u=(4, 2), b__0__v=(4, 2))
    wm = map_state_dict(src, tgt)
    assert not wm.complete and len(wm.ambiguous) == 1
    xs, ys = wm.ambiguous[0]
    assert {x.key for x in xs} == {k for k in src if not k.endswith("gamma")}
    assert {y.key for y in ys} == {k for k in tgt if not k.endswith("gamma")}
    assert not set(wm.mapping) & {y.key for y in ys}  # nothing of the group is guessed
    line = next(ln for ln in wm.problems() if "ambiguous" in ln)
    assert all(k in line for k in [x.key for x in xs] + [y.key for y in ys])


def test_numbers_in_names_are_positions() -> None:
    """conv0, conv1 against conv1, conv2: the numbers count from another start, they do not rename; the order holds."""
    w = (4, 4, 3, 3)
    wm = map_state_dict(_sd(conv1__weight=w, conv2__weight=w, conv3__weight=w),
                        _sd(conv0__weight=w, conv1__weight=w, conv2__weight=w))
    assert wm.complete and not wm.reordered
    assert wm.mapping == {"conv0.weight": "conv1.weight", "conv1.weight": "conv2.weight", "conv2.weight": "conv3.weight"}
