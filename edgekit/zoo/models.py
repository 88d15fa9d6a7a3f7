"""Reference models in plain torch (no torchvision): the shapes real edge deployments meet.

Each builder takes keyword arguments straight from a variant config in `edgekit.zoo.VARIANTS`
(variants are data, not subclasses). Weights are random but seeded by `edgekit.zoo.create`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# --------------------------------------------------------------------------------------- LeNet-5


class LeNet5(nn.Module):
    """LeNet-5 on 1x32x32: two conv/pool stages and three fully connected layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with basic blocks (ResNet-18/34 layout of He et al. 2016, torchvision-compatible shapes)."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c_in = [], width
        for i, blocks in enumerate(layers):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c_in if b == 0 else c_out, c_out, stride if b == 0 else 1)
                                          for b in range(blocks)]))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------------------- MobileNetV2


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, s, (k - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(c_in * expand)
        self.use_res = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(c_in, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, c_out, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018): depthwise-separable inverted residuals, ReLU6."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0) -> None:
        super().__init__()
        c_in = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, c_in, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            c_out = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        layers.append(ConvBNAct(c_in, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------- YOLOv5n-shaped


class Conv(nn.Sequential):
    """YOLOv5 Conv: Conv2d (no bias) + BatchNorm + SiLU."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c_in, c_out, 1)
        self.cv2 = Conv(c_out, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions (YOLOv5 v6)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(c_in, hidden, 1)
        self.cv3 = Conv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max pools."""

    def __init__(self, c_in: int, c_out: int, k: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden * 4, c_out, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Detect(nn.Module):
    """Three 1x1 heads; with `decode`, boxes are decoded to (batch, anchors, 5 + classes) like YOLOv5 export."""

    ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
    STRIDES = (8, 16, 32)

    def __init__(self, num_classes: int, channels: tuple[int, ...], decode: bool = True) -> None:
        super().__init__()
        self.no = num_classes + 5
        self.na = len(self.ANCHORS[0]) // 2
        self.decode = decode
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.register_buffer("anchor_grid", torch.tensor(self.ANCHORS, dtype=torch.float32).view(3, 1, 3, 1, 1, 2))
        for conv, stride in zip(self.m, self.STRIDES, strict=True):  # YOLOv5 bias prior
            b = conv.bias.detach().view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / stride) ** 2)
            b[:, 5:] += math.log(0.6 / (num_classes - 0.99))
            conv.bias = nn.Parameter(b.view(-1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outs = []
        for i, (conv, x) in enumerate(zip(self.m, feats, strict=True)):
            y = conv(x)
            if not self.decode:
                outs.append(y)
                continue
            bs, _, ny, nx = y.shape
            y = y.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
            gy, gx = torch.meshgrid(torch.arange(ny, dtype=torch.float32), torch.arange(nx, dtype=torch.float32),
                                    indexing="ij")
            grid = torch.stack((gx, gy), 2).view(1, 1, ny, nx, 2) - 0.5
            xy = (y[..., 0:2] * 2 + grid) * self.STRIDES[i]
            wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
            y = torch.cat((xy, wh, y[..., 4:]), -1)
            outs.append(y.reshape(bs, -1, self.no))
        return torch.cat(outs, 1) if self.decode else tuple(outs)


class YOLOv5(nn.Module):
    """YOLOv5 v6-shaped detector: CSP backbone with C3 blocks, SPPF, PAN neck, three detect heads."""

    def __init__(self, depth: float = 0.33, width: float = 0.25, num_classes: int = 80, decode: bool = True) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return _make_divisible(c * width, 8)

        def n(k: int) -> int:
            return max(round(k * depth), 1)

        c1, c2, c3, c4, c5 = ch(64), ch(128), ch(256), ch(512), ch(1024)
        # backbone
        self.b0 = Conv(3, c1, 6, 2, 2)
        self.b1 = Conv(c1, c2, 3, 2)
        self.b2 = C3(c2, c2, n(3))
        self.b3 = Conv(c2, c3, 3, 2)
        self.b4 = C3(c3, c3, n(6))  # P3
        self.b5 = Conv(c3, c4, 3, 2)
        self.b6 = C3(c4, c4, n(9))  # P4
        self.b7 = Conv(c4, c5, 3, 2)
        self.b8 = C3(c5, c5, n(3))
        self.b9 = SPPF(c5, c5)  # P5
        # PAN neck
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h10 = Conv(c5, c4, 1)
        self.h13 = C3(c4 * 2, c4, n(3), shortcut=False)
        self.h14 = Conv(c4, c3, 1)
        self.h17 = C3(c3 * 2, c3, n(3), shortcut=False)  # out P3
        self.h18 = Conv(c3, c3, 3, 2)
        self.h20 = C3(c3 * 2, c4, n(3), shortcut=False)  # out P4
        self.h21 = Conv(c4, c4, 3, 2)
        self.h23 = C3(c4 * 2, c5, n(3), shortcut=False)  # out P5
        self.detect = Detect(num_classes, (c3, c4, c5), decode)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h10 = self.h10(p5)
        h14 = self.h14(self.h13(torch.cat((self.up(h10), p4), 1)))
        o3 = self.h17(torch.cat((self.up(h14), p3), 1))
        o4 = self.h20(torch.cat((self.h18(o3), h14), 1))
        o5 = self.h23(torch.cat((self.h21(o4), h10), 1))
        return self.detect([o3, o4, o5])


# --------------------------------------------------------------------------------------- U-Net


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) for 1-channel medical-style images.

    Decoder stages upsample with ConvTranspose2d (what NPU rule checks must see); with
    `resize_last=True` the last stage uses bilinear Resize + 1x1 conv instead, so both forms appear.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, base: int = 16, depth: int = 4,
                 resize_last: bool = True) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.downs = nn.ModuleList()
        c_in = in_channels
        for w in widths[:-1]:
            self.downs.append(DoubleConv(c_in, w))
            c_in = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1])
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            if resize_last and i == 0:
                self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                              nn.Conv2d(widths[i + 1], widths[i], 1)))
            else:
                self.ups.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2))
            self.up_convs.append(DoubleConv(widths[i] * 2, widths[i]))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips), strict=True):
            x = conv(torch.cat((up(x), skip), 1))
        return self.head(x)


BUILDERS = {"lenet5": LeNet5, "resnet": ResNet, "mobilenetv2": MobileNetV2, "yolov5": YOLOv5, "unet": UNet}
