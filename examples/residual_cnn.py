"""A small residual CNN with BatchNorm, built with the functional API (Add joins each shortcut).

stem: Conv2D(16, 3x3, same) -> BatchNorm -> relu -> MaxPool2D(2)
block 1 (16 channels): two 3x3 convolutions with BatchNorm; identity shortcut
block 2 (32 channels, stride 2): two 3x3 convolutions with BatchNorm; 1x1 stride-2 shortcut
head: GlobalAvgPool2D -> Dense(classes)

Convolutions feeding a BatchNorm carry no bias (the BatchNorm's beta is the bias). BatchNorm
momentum 0.9 lets the moving statistics catch up within one short epoch.

    polyframe train examples/residual_cnn.py --data mnist --data-dir ../shared/data/mnist \
        --backend tensorflow --epochs 2 --batch-size 64
"""

import polyframe as pf

MOMENTUM = 0.9


def conv_bn(x, filters, kernel_size=3, strides=1, relu=True):
    x = pf.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    x = pf.BatchNorm(momentum=MOMENTUM)(x)
    return pf.Activation("relu")(x) if relu else x


def residual_block(x, filters, strides=1):
    shortcut = x if strides == 1 else conv_bn(x, filters, 1, strides, relu=False)
    h = conv_bn(x, filters, strides=strides)
    h = conv_bn(h, filters, relu=False)
    return pf.Activation("relu")(pf.Add()([h, shortcut]))


def build_model(input_shape, num_classes):
    image = pf.Input(input_shape, name="image")
    h = pf.MaxPool2D(2)(conv_bn(image, 16))
    h = residual_block(h, 16)
    h = residual_block(h, 32, strides=2)
    logits = pf.Dense(num_classes, name="logits")(pf.GlobalAvgPool2D()(h))
    return pf.Model(image, logits)


def optimizer():
    return pf.Adam(1e-3)
