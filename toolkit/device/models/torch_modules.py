"""The torch.nn.Module classes of the zoo.

Imported only by the models' build() functions, so that widths and counts need nothing but the
stdlib. Module-level classes (not classes made inside functions) keep models picklable. Written
for the old torch of the device images too: no torch API newer than 1.x.
"""

import torch
from torch import nn


class VGG(nn.Module):
    """conv3x3(bias)-BN-ReLU stack with max-pools per layout, then Linear(last width)."""

    def __init__(self, layout, widths, classes):
        super(VGG, self).__init__()
        layers, cin, i = [], 3, 0
        for op in layout:
            if op == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers += [nn.Conv2d(cin, widths[i], 3, padding=1), nn.BatchNorm2d(widths[i]),
                       nn.ReLU(inplace=True)]
            cin, i = widths[i], i + 1
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv; the projection (if any) sees the pre-activated input."""

    def __init__(self, cin, mid, cout, stride):
        super(PreActBlock, self).__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, pre-activation blocks, final BN (no ReLU, as in NeuralScale), pool, Linear."""

    def __init__(self, stem, blocks, classes):
        super(PreActResNet, self).__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
        self.layers = nn.Sequential(*[PreActBlock(*b) for b in blocks])
        last = blocks[-1][2]
        self.bn_out = nn.BatchNorm2d(last)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(last, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        out = self.bn_out(self.layers(self.conv1(x)))
        return self.linear(torch.flatten(self.avgpool(out), 1))


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, project 1x1 (no activation), plus identity or 1x1 conv + BN."""

    def __init__(self, cin, exp, cout, stride):
        super(InvertedResidual, self).__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(cin, exp, 1), nn.BatchNorm2d(exp), nn.ReLU6(inplace=True),
            nn.Conv2d(exp, exp, 3, stride=stride, padding=1, groups=exp), nn.BatchNorm2d(exp),
            nn.ReLU6(inplace=True),
            nn.Conv2d(exp, cout, 1), nn.BatchNorm2d(cout),
        )
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.residual(x) + shortcut


class MobileNetV2(nn.Module):
    """Stem conv + BN + ReLU6, inverted residuals, 1x1 conv + BN + ReLU6, pool, 1x1 classifier."""

    def __init__(self, stem, blocks, last, classes):
        super(MobileNetV2, self).__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1), nn.BatchNorm2d(stem),
                                 nn.ReLU6(inplace=True))
        self.stages = nn.Sequential(*[InvertedResidual(*b) for b in blocks])
        self.conv1 = nn.Sequential(nn.Conv2d(blocks[-1][2], last, 1), nn.BatchNorm2d(last),
                                   nn.ReLU6(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv2 = nn.Conv2d(last, classes, 1)

    def forward(self, x):
        out = self.avgpool(self.conv1(self.stages(self.pre(x))))
        return torch.flatten(self.conv2(out), 1)


class Bottleneck(nn.Module):
    """1x1-3x3(stride)-1x1 with BN, ReLU after the add; projection conv + BN when needed."""

    def __init__(self, cin, a, b, cout, stride):
        super(Bottleneck, self).__init__()
        self.conv1 = nn.Conv2d(cin, a, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(a)
        self.conv2 = nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(b)
        self.conv3 = nn.Conv2d(b, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """Stem conv + BN + ReLU, bottlenecks, global avg-pool, Linear."""

    def __init__(self, stem, blocks, classes):
        super(ResNet, self).__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.layers = nn.Sequential(*[Bottleneck(*b) for b in blocks])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(blocks[-1][3], classes)

    def forward(self, x):
        out = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(self.avgpool(out), 1))
