"""BatchNorm folded into the convolution before it (eval semantics: running statistics)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # Exact types only: subclasses such as timm's BatchNormAct2d also apply an activation.
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.affine
        and conv.out_channels == bn.num_features
    )


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``bn(conv(x))`` in eval mode, whatever mode the pair is in now."""
    training = conv.training
    # torch's fusion insists on eval mode; the pair is replaced anyway, the new conv keeps the mode
    conv.eval()
    bn.eval()
    with torch.no_grad():
        fused = fuse_conv_bn_eval(conv, bn)
    return fused.train(training)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold BatchNorm2d into the preceding Conv2d, in place (eval semantics); returns how many.

    Two patterns where "preceding" is certain: consecutive items of an ``nn.Sequential`` (smp's
    ``Conv2dReLU``, torchvision downsample branches) and torchvision ResNet blocks, whose forward
    is ``bnN(convN(x))`` for each ``convN``/``bnN`` pair.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    count = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for a, b in zip(names[:-1], names[1:]):
                conv, bn = parent._modules[a], parent._modules[b]
                if _foldable(conv, bn):
                    parent._modules[a] = _fold(conv, bn)
                    parent._modules[b] = nn.Identity()
                    count += 1
        if isinstance(parent, (ResNet, BasicBlock, Bottleneck)):
            for i in (1, 2, 3):
                conv, bn = getattr(parent, f"conv{i}", None), getattr(parent, f"bn{i}", None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(parent, f"conv{i}", _fold(conv, bn))
                    setattr(parent, f"bn{i}", nn.Identity())
                    count += 1
    return count
