"""Layer groups: a network's depth as a few named groups, input to output.

Fine-tuning recipes talk about depth ("freeze the first two stages", "train the
head at 10x", "divide the LR by 2.6 per group going down"). ``layer_groups``
turns a model into that vocabulary: an ordered list of named groups, input to
output, that together hold every parameter exactly once. Learning rates per
group are in ``ftkit.lr.groups``.

How a model is cut (the rule, per family):

* The first group is the **stem** (the layers that see pixels), the last is the
  **head** (the classifier slot: ``fc``, ``classifier.1``, ``heads.head``...),
  and in between come the **stages** the architecture's authors defined, named
  by their qualified module names (``layer1``, ``features.3``). A group made of
  several consecutive siblings is named by their span (``features.2-3``).
* ResNet/ResNeXt/Wide-ResNet: stem, layer1..layer4, head. RegNet: stem,
  trunk_output.block1..4, head. ShuffleNetV2: stem, stage2..4, conv5, head.
* MobileNetV2/V3, EfficientNet-Lite (``_blocks``): blocks are grouped into
  stages: a block with a residual connection (same shape in and out) joins the
  stage before it, a block that changes width or resolution starts a new one.
  The final 1x1 conv (``features.18``, ``_conv_head``) is a group of its own.
* EfficientNet/V2 (torchvision), MNASNet: their ``features``/``layers``
  children already are stages.
* ConvNeXt and Swin: a downsampling layer joins the stage it feeds
  (``features.2-3``), as in the papers' "stage 2".
* DenseNet: each dense block with the transition after it, named after the
  block (``features.denseblock1``). GoogLeNet and Inception-v3: the inception
  blocks of one resolution (``inception4``, ``Mixed_6``); auxiliary
  classifiers form an ``aux`` group just before the head.
* VGG: one group per pooling stage; AlexNet: one group per conv layer (so the
  groups are the conv1..conv5 of Yosinski et al.); the pretrained fully
  connected layers before the head (``classifier.0``, ``classifier.3``) and
  MobileNetV3/MaxViT's pre-logits layer are groups of their own.
* ViT: stem = patch projection + class token + position embedding, then one
  group per encoder layer. MaxViT: stem, blocks.0..3.
* Norm layers that follow a stage (``norm5``, Swin's ``norm``, ViT's
  ``encoder.ln``, ConvNeXt's ``classifier.0``) join the group before them.
* Any other model: its top-level children with parameters, in registration
  order, with the head (found by ``ftkit.models.heads.find_head_block``, so a
  ``replace_head(hidden=...)`` block stays whole) split out.
* Parameters no rule above claims (a module you added) get a group of their
  own, named after the module, just before the head.

Modules without parameters or buffers (ReLU, pooling, dropout) are left out of
``LayerGroup.modules``; they have nothing to freeze.

>>> model = torchvision.models.resnet18()                         # doctest: +SKIP
>>> [g.name for g in layer_groups(model)]                         # doctest: +SKIP
['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'head']
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import nn

from ftkit.core.torchutil import STAT_NORM, find_module, get_module
from ftkit.models.heads import HeadNotFoundError, find_head_block

__all__ = ["LayerGroup", "layer_groups"]

# Every norm layer, running statistics or not: a structural rule (it joins the group before it).
_NORMS = (STAT_NORM, nn.LayerNorm, nn.GroupNorm)


@dataclass
class LayerGroup:
    """One depth group of a network.

    Attributes:
        name: what a learner calls it: "stem", "layer1", "features.2-3", "head".
        modules: qualified names of the modules it holds (those with parameters
            or buffers), in forward order.
        param_names: qualified names of parameters owned directly by a module
            whose children are split across groups (ViT's ``class_token``).
    """

    name: str
    modules: list[str]
    param_names: list[str] = field(default_factory=list)

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The group's parameters in ``model`` (each once)."""
        seen: dict[int, nn.Parameter] = {}
        for name in self.modules:
            for p in get_module(model, name).parameters():
                seen.setdefault(id(p), p)
        for name in self.param_names:
            p = model.get_parameter(name)
            seen.setdefault(id(p), p)
        return list(seen.values())

    def named_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """``(qualified name, parameter)`` pairs, each parameter once."""
        ids = {id(p) for p in self.parameters(model)}
        return [(n, p) for n, p in model.named_parameters() if id(p) in ids]


def _stateful(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _is_norm_leaf(module: nn.Module) -> bool:
    return isinstance(module, _NORMS) and not any(True for _ in module.children())


class _Builder:
    """Collects groups, keeping only modules that hold state."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.groups: list[LayerGroup] = []

    def kids(self, prefix: str) -> list[tuple[str, nn.Module]]:
        parent = get_module(self.model, prefix)
        return [(f"{prefix}.{n}" if prefix else n, m) for n, m in parent.named_children()]

    def keep(self, modules: Sequence[str]) -> list[str]:
        """The names that exist and hold parameters or buffers."""
        return [m for m in modules if (module := find_module(self.model, m)) is not None and _stateful(module)]

    def add(self, name: str | None, modules: Sequence[str], param_names: Sequence[str] = ()) -> None:
        """Add a group (named by the span of its modules when ``name`` is None)."""
        kept = self.keep(modules)
        if kept or param_names:
            self.groups.append(LayerGroup(name or _span(kept), kept, list(param_names)))

    def join(self, modules: Sequence[str]) -> None:
        """Append modules to the last group (or start one if there is none)."""
        kept = self.keep(modules)
        if kept and self.groups:
            self.groups[-1].modules.extend(kept)
        elif kept:
            self.add(None, kept)

    def split(self, prefix: str, starts: Callable[[int, str, nn.Module], bool],
              first: str | None = "stem") -> None:
        """Cut the children of ``prefix`` into consecutive runs; ``starts`` marks run starts.

        The first run is named ``first``; the others by their span.
        """
        runs: list[list[str]] = []
        for i, (name, child) in enumerate(self.kids(prefix)):
            if not runs or starts(i, name, child):
                runs.append([])
            runs[-1].append(name)
        for j, run in enumerate(runs):
            self.add(first if j == 0 and first else None, run)

    def neck_and_head(self, container: str) -> None:
        """Layers of ``container`` before its last stateful child get groups; that child is the head."""
        if find_module(self.model, container) is None:
            return
        kids = [(n, m) for n, m in self.kids(container) if _stateful(m)]
        if not kids:  # a bare Linear put where the Sequential was
            self.head(container)
            return
        for name, child in kids[:-1]:
            if _is_norm_leaf(child):
                self.join([name])
            else:
                self.add(None, [name])
        self.head(kids[-1][0])

    def head(self, name: str) -> None:
        self.add("head", [name])


def _span(names: Sequence[str]) -> str:
    """``["features.2", "features.3"]`` -> ``"features.2-3"``; named children: the first name."""
    prefix, _, first = names[0].rpartition(".")
    last = names[-1].rpartition(".")[2]
    if len(names) == 1 or not (first.isdigit() and last.isdigit()):
        return names[0]
    return f"{prefix + '.' if prefix else ''}{first}-{last}"


def _residual(block: nn.Module) -> bool:
    """Same shape in and out (the block is a repeat inside a stage)."""
    if hasattr(block, "use_res_connect"):  # torchvision InvertedResidual / MBConv
        return bool(block.use_res_connect)
    args = getattr(block, "_block_args", None)  # efficientnet-lite / lukemelas MBConvBlock
    if args is not None:
        stride = args.stride if isinstance(args.stride, int) else max(args.stride)
        return args.input_filters == args.output_filters and stride == 1
    return False


# --------------------------------------------------------------------------- families


def _resnet(b: _Builder) -> None:
    b.add("stem", ["conv1", "bn1"])
    for name in ("layer1", "layer2", "layer3", "layer4"):
        b.add(name, [name])
    b.head("fc")


def _regnet(b: _Builder) -> None:
    b.add("stem", ["stem"])
    for name, _ in b.kids("trunk_output"):
        b.add(name, [name])
    b.head("fc")


def _shufflenet(b: _Builder) -> None:
    b.add("stem", ["conv1"])
    for name in ("stage2", "stage3", "stage4", "conv5"):
        b.add(name, [name])
    b.head("fc")


def _vgg(b: _Builder) -> None:
    kids = b.kids("features")
    after_pool = {i + 1 for i, (_, m) in enumerate(kids) if isinstance(m, nn.MaxPool2d)}
    b.split("features", lambda i, n, m: i in after_pool)
    b.neck_and_head("classifier")


def _alexnet(b: _Builder) -> None:
    b.split("features", lambda i, n, m: isinstance(m, nn.Conv2d))
    b.neck_and_head("classifier")


def _blocks(b: _Builder, prefix: str) -> None:
    """Each child with weights starts a group; norms, activations and pools join the one before."""
    b.split(prefix, lambda i, n, m: _stateful(m) and not _is_norm_leaf(m))


def _squeezenet(b: _Builder) -> None:
    _blocks(b, "features")
    b.neck_and_head("classifier")


def _densenet(b: _Builder) -> None:
    b.split("features", lambda i, n, m: n.rpartition(".")[2].startswith("denseblock"))
    b.neck_and_head("classifier")


def _efficientnet(b: _Builder) -> None:
    _blocks(b, "features")
    b.neck_and_head("classifier")


def _mobilenet(b: _Builder) -> None:
    kids = b.kids("features")
    last = len(kids) - 1  # the final 1x1 conv is a group of its own
    b.split("features", lambda i, n, m: i in (1, last) or not _residual(m))
    b.neck_and_head("classifier")


def _mnasnet(b: _Builder) -> None:
    kids = b.kids("layers")
    is_stage = [isinstance(m, nn.Sequential) for _, m in kids]
    b.split("layers", lambda i, n, m: is_stage[i] or is_stage[i - 1])
    b.neck_and_head("classifier")


def _inception(b: _Builder, pattern: str) -> None:
    """Stem, then inception blocks grouped by resolution (the digit in their name), aux, head."""
    stem, stages, aux = [], {}, []
    for name, _ in b.kids(""):
        match = re.match(pattern, name)
        if name.lower().startswith("aux"):
            aux.append(name)
        elif match:
            stages.setdefault(match.group(1), []).append(name)
        elif not stages and name != "fc":
            stem.append(name)
    b.add("stem", stem)
    for stage, names in stages.items():
        b.add(stage, names)
    b.add("aux", aux)
    b.head("fc")


def _vit(b: _Builder) -> None:
    owned = dict(b.model.named_parameters())
    loose = [n for n in ("class_token", "encoder.pos_embedding") if n in owned]
    b.add("stem", ["conv_proj"], loose)
    for name, _ in b.kids("encoder.layers"):
        b.add(name, [name])
    b.join(["encoder.ln"])
    b.neck_and_head("heads")


def _swin_convnext(b: _Builder) -> None:
    # features: 0 stem, odd: stages, even >= 2: downsampling into the next stage
    b.split("features", lambda i, n, m: i <= 1 or i % 2 == 0)
    b.join(["norm"])  # Swin's final LayerNorm
    b.neck_and_head("classifier" if find_module(b.model, "classifier") is not None else "head")


def _maxvit(b: _Builder) -> None:
    b.add("stem", ["stem"])
    for name, _ in b.kids("blocks"):
        b.add(name, [name])
    b.neck_and_head("classifier")


def _efficientnet_lite(b: _Builder) -> None:
    b.add("stem", ["_conv_stem", "_bn0"])
    b.split("_blocks", lambda i, n, m: not _residual(m), first=None)
    b.add("_conv_head", ["_conv_head", "_bn1"])
    b.head("_fc")


def _family(model: nn.Module) -> Callable[[_Builder], None] | None:
    from torchvision import models as tvm

    table: list[tuple[type, Callable[[_Builder], None]]] = [
        (tvm.ResNet, _resnet), (tvm.RegNet, _regnet), (tvm.ShuffleNetV2, _shufflenet),
        (tvm.VGG, _vgg), (tvm.AlexNet, _alexnet), (tvm.SqueezeNet, _squeezenet),
        (tvm.DenseNet, _densenet), (tvm.EfficientNet, _efficientnet),
        (tvm.MobileNetV2, _mobilenet), (tvm.MobileNetV3, _mobilenet), (tvm.MNASNet, _mnasnet),
        (tvm.GoogLeNet, lambda b: _inception(b, r"(inception\d)")),
        (tvm.Inception3, lambda b: _inception(b, r"(Mixed_\d)")),
        (tvm.VisionTransformer, _vit), (tvm.SwinTransformer, _swin_convnext),
        (tvm.ConvNeXt, _swin_convnext), (tvm.MaxVit, _maxvit),
    ]
    for cls, rule in table:
        if isinstance(model, cls):
            return rule
    if all(hasattr(model, a) for a in ("_conv_stem", "_blocks", "_conv_head", "_fc")):
        return _efficientnet_lite  # efficientnet_lite_pytorch / efficientnet_pytorch
    return None


def _generic(b: _Builder) -> None:
    """Top-level children in registration order; containers on the way to the head are opened."""
    try:
        head = find_head_block(b.model)
    except HeadNotFoundError:
        head = None

    def walk(prefix: str) -> None:
        for name, child in b.kids(prefix):
            if name == head or not _stateful(child):
                continue
            if head is not None and head.startswith(name + "."):
                walk(name)
            elif _is_norm_leaf(child) and b.groups:
                b.join([name])
            else:
                b.add(name, [name])

    walk("")
    loose = [n for n, _ in b.model.named_parameters(recurse=False)]
    if loose and b.groups:
        b.groups[0].param_names.extend(loose)
    elif loose:
        b.add("params", [], loose)
    if head is not None:
        b.head(head)


def _complete(model: nn.Module, groups: list[LayerGroup]) -> list[LayerGroup]:
    """Give every parameter the rules above missed a group, placed before the head."""
    covered = {id(p) for g in groups for p in g.parameters(model)}
    extra: list[LayerGroup] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(t + ".") for t in taken):
            continue
        params = list(module.parameters())
        if params and not any(id(p) in covered for p in params):
            extra.append(LayerGroup(name, [name]))
            taken.append(name)
            covered.update(id(p) for p in params)
    loose = [n for n, p in model.named_parameters() if id(p) not in covered]
    if loose:
        extra.append(LayerGroup("other", [], loose))
    if not extra:
        return groups
    at = len(groups) - 1 if groups and groups[-1].name == "head" else len(groups)
    return groups[:at] + extra + groups[at:]


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The model's depth groups, input to output: stem, stages..., head.

    Every parameter belongs to exactly one group. The rule per architecture
    family is in this module's docstring; unknown models get their top-level
    children, with the head split out by ``ftkit.models.heads.find_head_block``.

    Args:
        model: any ``nn.Module``; torchvision classification models and
            EfficientNet-Lite get their published stage structure.

    Returns:
        The groups; the last one is named "head" when the model has a
        classifier (a model whose head is ``nn.Identity`` has none).

    >>> [g.name for g in layer_groups(torchvision.models.mobilenet_v2())][:4]   # doctest: +SKIP
    ['stem', 'features.1', 'features.2-3', 'features.4-6']
    """
    builder = _Builder(model)
    (_family(model) or _generic)(builder)
    return _complete(model, builder.groups)
