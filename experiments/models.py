"""Flax NNX models: an encoder, a projection head for the metric losses, a linear classifier.

Every model maps a batch ``x`` (images ``[B, H, W, C]`` or 1-D signals ``[B, L, C]``, float32) to::

    {"logits": [B, num_classes],       # self.classifier(features): linear in the features
     "features": [B, F],               # encoder output
     "projection": [B, projection_dim]}  # L2-normalised self.projection_head(features)

The attribute names are part of the API: ``self.classifier`` (an ``nnx.Linear``),
``self.projection_head`` (Linear -> ReLU -> Linear) and everything else is the encoder. So a linear
probe trains ``nnx.state(model, classifier_param_filter())`` only.

Modes: ``model.train()`` / ``model.eval()`` set, in place, BatchNorm ``use_running_average`` and
Dropout ``deterministic`` (dropout exists only when ``dropout_rate`` / ``drop_path_rate`` > 0).
Models are built in train mode. The mode is a static attribute, so it lives in the ``GraphDef``
returned by ``nnx.split``: split once per mode (or switch the mode before splitting).

State: trainable weights are ``nnx.Param``; BatchNorm running means/variances are ``nnx.BatchStat``
(updated in place by a train-mode call, never by gradients). Only with dropout does the model also
hold ``nnx.RngState`` (``RngKey``/``RngCount`` per dropout layer, forked from ``seed``): do not
average those over devices, and fold in the device index if masks must differ per device.
``nnx.split(model, nnx.Param, ...)`` puts everything that is not a parameter into the second state.

Example (the functional form used under ``jax.jit`` / ``jax.shard_map``)::

    model = create_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def forward(params, rest, x):
        model = nnx.merge(graphdef, params, rest)
        out = model(x)                      # train mode: updates the BatchStats in `model`
        return out, nnx.state(model, nnx.Not(nnx.Param))  # the new `rest`

For data parallelism inside ``jax.shard_map``, pass ``bn_axis_name=<mesh axis>`` so BatchNorm
averages its batch statistics over devices (the running statistics then stay identical).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "CNN1D",
    "MLP",
    "MODELS",
    "EfficientNetB0",
    "ResNet18",
    "SmallCNN",
    "classifier_param_filter",
    "create_model",
    "encoder_param_filter",
    "l2_normalize",
    "projection_head_param_filter",
]

# He-normal for convolutions feeding ReLU/swish (kaiming_normal in the torchvision references).
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def l2_normalize(x: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Rows of ``x`` [B, d] scaled to unit L2 norm; an all-zero row stays zero (finite gradient)."""
    sq_norm = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq_norm, eps * eps))


def classifier_param_filter() -> nnx.filterlib.Filter:
    """Selects exactly the classifier's parameters (kernel and bias of ``model.classifier``)."""
    return nnx.All(nnx.Param, nnx.PathContains("classifier"))


def projection_head_param_filter() -> nnx.filterlib.Filter:
    """Selects exactly the projection head's parameters."""
    return nnx.All(nnx.Param, nnx.PathContains("projection_head"))


def encoder_param_filter() -> nnx.filterlib.Filter:
    """Selects the encoder's parameters: every ``nnx.Param`` outside the two heads."""
    return nnx.All(
        nnx.Param,
        nnx.Not(nnx.PathContains("classifier")),
        nnx.Not(nnx.PathContains("projection_head")),
    )


class ProjectionHead(nnx.Module):
    """Linear -> ReLU -> Linear, [B, F] -> [B, projection_dim]; the model L2-normalises it."""

    def __init__(self, in_features: int, hidden_dim: int, projection_dim: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_features, hidden_dim, rngs=rngs)
        self.out = nnx.Linear(hidden_dim, projection_dim, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.out(jax.nn.relu(self.hidden(features)))


class _EncoderWithHeads(nnx.Module):
    """Base class: subclasses build the encoder, call ``_init_heads`` and implement ``encode``.

    ``input_rank`` is the rank of one example (3 for [H, W, C], 2 for [L, C]);
    ``_input_kwargs(input_shape)`` turns an example shape into the constructor's shape arguments.
    """

    input_rank: ClassVar[int]

    def _init_heads(
        self,
        *,
        feature_dim: int,
        num_classes: int,
        projection_dim: int,
        projection_hidden_dim: int | None,
        dropout_rate: float,
        rngs: nnx.Rngs,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes}.")
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be a positive int, got {projection_dim}.")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.projection_dim = projection_dim
        hidden = feature_dim if projection_hidden_dim is None else projection_hidden_dim
        self.projection_head = ProjectionHead(feature_dim, hidden, projection_dim, rngs=rngs)
        # Dropout before the classifier only (never on `features` or the projection); it holds an
        # RNG stream, so it is created only when used.
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None
        self.classifier = nnx.Linear(feature_dim, num_classes, rngs=rngs)

    def _check_input(self, x: jax.Array) -> None:
        expected = self._expected_example_shape()
        if x.ndim != 1 + len(expected) or any(
            isinstance(want, int) and got != want
            for got, want in zip(x.shape[1:], expected, strict=True)
        ):
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, expected))}] for "
                f"{type(self).__name__}, got shape {tuple(x.shape)}."
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"x must be a floating array, got dtype {x.dtype}.")

    def _expected_example_shape(self) -> tuple[int | str, ...]:
        """Per-example shape; a str names a free dimension."""
        raise NotImplementedError

    def encode(self, x: jax.Array) -> jax.Array:
        """[B, *input_shape] -> features [B, F]."""
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """[B, *input_shape] -> {"logits": [B, C], "features": [B, F], "projection": [B, P]}."""
        self._check_input(x)
        features = self.encode(x)
        head_input = features if self.dropout is None else self.dropout(features)
        return {
            "logits": self.classifier(head_input),
            "features": features,
            "projection": l2_normalize(self.projection_head(features)),
        }


class _ImageEncoder(_EncoderWithHeads):
    """Base class of the image models: examples are [H, W, C], any H and W, C = in_channels."""

    input_rank = 3
    in_channels: int

    @staticmethod
    def _input_kwargs(input_shape: tuple[int, ...]) -> dict[str, Any]:
        return {"in_channels": input_shape[-1]}

    def _expected_example_shape(self) -> tuple[int | str, ...]:
        return ("H", "W", self.in_channels)


class _SignalEncoder(_EncoderWithHeads):
    """Base class of the 1-D models: examples are [L, C], L = input_length, C = in_channels."""

    input_rank = 2
    input_length: int
    in_channels: int

    @staticmethod
    def _input_kwargs(input_shape: tuple[int, ...]) -> dict[str, Any]:
        return {"input_length": input_shape[0], "in_channels": input_shape[1]}

    def _expected_example_shape(self) -> tuple[int | str, ...]:
        return (self.input_length, self.in_channels)


def _batch_norm(
    num_features: int, *, momentum: float, epsilon: float, axis_name: str | None, rngs: nnx.Rngs
) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        num_features, momentum=momentum, epsilon=epsilon, axis_name=axis_name, rngs=rngs
    )


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values}.")
    return values


class ConvBNAct(nnx.Module):
    """Conv (no bias, symmetric 'same' padding) -> BatchNorm -> activation, on [B, *spatial, C]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        num_spatial_dims: int = 2,
        strides: int = 1,
        groups: int = 1,
        activation: Callable[[jax.Array], jax.Array] | None = jax.nn.relu,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        bn_axis_name: str | None = None,
        rngs: nnx.Rngs,
    ):
        pad = kernel_size // 2
        self.conv = nnx.Conv(
            in_channels,
            out_channels,
            (kernel_size,) * num_spatial_dims,
            strides=strides,
            padding=((pad, pad),) * num_spatial_dims,
            feature_group_count=groups,
            use_bias=False,
            kernel_init=_conv_init,
            rngs=rngs,
        )
        self.bn = _batch_norm(
            out_channels,
            momentum=bn_momentum,
            epsilon=bn_epsilon,
            axis_name=bn_axis_name,
            rngs=rngs,
        )
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.bn(self.conv(x))
        return x if self.activation is None else self.activation(x)


# --------------------------------------------------------------------------- small models


class SmallCNN(_ImageEncoder):
    """Small CNN for 8x8 (sklearn digits) and 28x28 (MNIST-like) images.

    Encoder: for each width, 3x3 conv -> BatchNorm -> ReLU, then a 2x2 max-pool between stages
    (skipped once the map is 1 pixel); global average pool -> features [B, widths[-1]].
    With the default widths (32, 64) the encoder has ~19k parameters.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        projection_dim: int = 128,
        rngs: nnx.Rngs,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64),
        projection_hidden_dim: int | None = None,
        dropout_rate: float = 0.0,
        bn_momentum: float = 0.9,
        bn_axis_name: str | None = None,
    ):
        widths = _positive_ints("widths", widths)
        self.in_channels = in_channels
        channels = (in_channels, *widths)
        self.blocks = nnx.List(
            [
                ConvBNAct(
                    cin, cout, 3, bn_momentum=bn_momentum, bn_axis_name=bn_axis_name, rngs=rngs
                )
                for cin, cout in zip(channels[:-1], channels[1:], strict=True)
            ]
        )
        self._init_heads(
            feature_dim=widths[-1],
            num_classes=num_classes,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
            dropout_rate=dropout_rate,
            rngs=rngs,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1 and min(x.shape[1:3]) >= 2:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return jnp.mean(x, axis=(1, 2))


class CNN1D(_SignalEncoder):
    """1-D CNN for MNIST-1D signals [B, L, C] (L = 40, C = 1).

    Encoder: for each width, a conv (kernel 5 first, then 3) with stride 2 -> BatchNorm -> ReLU;
    the final map is flattened and mapped by Linear -> ReLU to features [B, feature_dim]. Flattening
    (rather than pooling) keeps the position information MNIST-1D templates carry.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        projection_dim: int = 128,
        rngs: nnx.Rngs,
        input_length: int = 40,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 64),
        feature_dim: int = 128,
        projection_hidden_dim: int | None = None,
        dropout_rate: float = 0.0,
        bn_momentum: float = 0.9,
        bn_axis_name: str | None = None,
    ):
        widths = _positive_ints("widths", widths)
        self.input_length = input_length
        self.in_channels = in_channels
        channels = (in_channels, *widths)
        self.blocks = nnx.List(
            [
                ConvBNAct(
                    cin,
                    cout,
                    5 if i == 0 else 3,
                    num_spatial_dims=1,
                    strides=2,
                    bn_momentum=bn_momentum,
                    bn_axis_name=bn_axis_name,
                    rngs=rngs,
                )
                for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True))
            ]
        )
        length = input_length
        for _ in widths:
            length = math.ceil(length / 2)  # symmetric k//2 padding, stride 2, odd kernel
        self.feature_layer = nnx.Linear(length * widths[-1], feature_dim, rngs=rngs)
        self._init_heads(
            feature_dim=feature_dim,
            num_classes=num_classes,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
            dropout_rate=dropout_rate,
            rngs=rngs,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        return jax.nn.relu(self.feature_layer(x.reshape(x.shape[0], -1)))


class MLP(_SignalEncoder):
    """MLP for MNIST-1D: flattens [B, L, C], Linear -> ReLU per width; features [B, widths[-1]].

    No BatchNorm, so train and eval mode coincide unless ``dropout_rate > 0``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        projection_dim: int = 128,
        rngs: nnx.Rngs,
        input_length: int = 40,
        in_channels: int = 1,
        widths: Sequence[int] = (256, 256),
        projection_hidden_dim: int | None = None,
        dropout_rate: float = 0.0,
    ):
        widths = _positive_ints("widths", widths)
        self.input_length = input_length
        self.in_channels = in_channels
        sizes = (input_length * in_channels, *widths)
        self.layers = nnx.List(
            [
                nnx.Linear(din, dout, rngs=rngs)
                for din, dout in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self._init_heads(
            feature_dim=widths[-1],
            num_classes=num_classes,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
            dropout_rate=dropout_rate,
            rngs=rngs,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return x


# --------------------------------------------------------------------------- ResNet-18


class BasicBlock(nnx.Module):
    """ResNet basic block: two 3x3 conv-BN, ReLU after the residual sum; 1x1 conv-BN shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        strides: int,
        *,
        bn_momentum: float,
        bn_axis_name: str | None,
        rngs: nnx.Rngs,
    ):
        bn = {"bn_momentum": bn_momentum, "bn_axis_name": bn_axis_name}
        self.conv1 = ConvBNAct(in_channels, out_channels, 3, strides=strides, rngs=rngs, **bn)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, activation=None, rngs=rngs, **bn)
        if strides != 1 or in_channels != out_channels:
            self.shortcut = ConvBNAct(
                in_channels, out_channels, 1, strides=strides, activation=None, rngs=rngs, **bn
            )
        else:
            self.shortcut = None

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x if self.shortcut is None else self.shortcut(x)
        return jax.nn.relu(self.conv2(self.conv1(x)) + residual)


class ResNet18(_ImageEncoder):
    """ResNet-18 (He et al. 2016) with the CIFAR stem: 3x3 conv stride 1, no max-pool.

    Stages of two basic blocks with widths (64, 128, 256, 512) and strides (1, 2, 2, 2); global
    average pool -> features [B, 512]. Encoder + 10-class classifier: 11,173,962 parameters.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        projection_dim: int = 128,
        rngs: nnx.Rngs,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        projection_hidden_dim: int | None = None,
        dropout_rate: float = 0.0,
        bn_momentum: float = 0.9,
        bn_axis_name: str | None = None,
    ):
        widths = _positive_ints("widths", widths)
        blocks_per_stage = _positive_ints("blocks_per_stage", blocks_per_stage)
        if len(widths) != len(blocks_per_stage):
            raise ValueError(
                f"widths and blocks_per_stage must have the same length, got {widths} and "
                f"{blocks_per_stage}."
            )
        self.in_channels = in_channels
        bn = {"bn_momentum": bn_momentum, "bn_axis_name": bn_axis_name}
        self.stem = ConvBNAct(in_channels, widths[0], 3, rngs=rngs, **bn)
        blocks = []
        cin = widths[0]
        for stage, (width, repeats) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            for i in range(repeats):
                strides = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(cin, width, strides, rngs=rngs, **bn))
                cin = width
        self.blocks = nnx.List(blocks)
        self._init_heads(
            feature_dim=widths[-1],
            num_classes=num_classes,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
            dropout_rate=dropout_rate,
            rngs=rngs,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return jnp.mean(x, axis=(1, 2))


# --------------------------------------------------------------------------- EfficientNet-B0

# Tan & Le (2019), Table 1, stages 2-8: (expand_ratio, kernel, stride, out_channels, repeats).
EFFICIENTNET_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class SqueezeExcitation(nnx.Module):
    """Squeeze-and-excitation: global pool -> 1x1 conv -> swish -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int, *, rngs: nnx.Rngs):
        self.reduce = nnx.Conv(
            channels, squeeze_channels, (1, 1), kernel_init=_conv_init, rngs=rngs
        )
        self.expand = nnx.Conv(
            squeeze_channels, channels, (1, 1), kernel_init=_conv_init, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = self.expand(jax.nn.swish(self.reduce(s)))
        return x * jax.nn.sigmoid(s)


class MBConv(nnx.Module):
    """Mobile inverted bottleneck (MBConv) with squeeze-excitation and swish.

    [1x1 expand conv-BN-swish] -> kxk depthwise conv-BN-swish -> SE -> 1x1 project conv-BN;
    identity residual (with stochastic depth) when stride 1 and channels match.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expand_ratio: int,
        kernel_size: int,
        strides: int,
        se_ratio: float,
        drop_path_rate: float,
        bn_momentum: float,
        bn_axis_name: str | None,
        rngs: nnx.Rngs,
    ):
        bn = {"bn_momentum": bn_momentum, "bn_epsilon": 1e-3, "bn_axis_name": bn_axis_name}
        hidden = in_channels * expand_ratio
        if expand_ratio != 1:
            self.expand = ConvBNAct(
                in_channels, hidden, 1, activation=jax.nn.swish, rngs=rngs, **bn
            )
        else:
            self.expand = None
        self.depthwise = ConvBNAct(
            hidden,
            hidden,
            kernel_size,
            strides=strides,
            groups=hidden,
            activation=jax.nn.swish,
            rngs=rngs,
            **bn,
        )
        # The SE bottleneck is a fraction of the block's input channels (not the expanded ones).
        self.se = SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)), rngs=rngs)
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None, rngs=rngs, **bn)
        self.use_residual = strides == 1 and in_channels == out_channels
        # Stochastic depth = per-example dropout of the residual branch.
        if self.use_residual and drop_path_rate > 0:
            self.drop_path = nnx.Dropout(drop_path_rate, broadcast_dims=(1, 2, 3), rngs=rngs)
        else:
            self.drop_path = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.se(self.depthwise(y)))
        if not self.use_residual:
            return y
        if self.drop_path is not None:
            y = self.drop_path(y)
        return x + y


class EfficientNetB0(_ImageEncoder):
    """EfficientNet-B0 (Tan & Le 2019): MBConv blocks with squeeze-excitation, swish, BatchNorm.

    Stem 3x3 conv (stride ``stem_stride``, 32 channels) -> the seven MBConv stages of
    ``EFFICIENTNET_B0_STAGES`` -> 1x1 conv to 1280 -> global average pool -> features [B, 1280].
    Encoder + 1000-class classifier: 5,288,548 parameters (as torchvision's efficientnet_b0).
    The paper trains with ``dropout_rate=0.2`` and ``drop_path_rate=0.2``; both default to 0 here
    because they add an RNG stream (``nnx.RngState``) the trainer must carry.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        projection_dim: int = 128,
        rngs: nnx.Rngs,
        in_channels: int = 3,
        stem_stride: int = 2,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
        projection_hidden_dim: int | None = None,
        dropout_rate: float = 0.0,
        bn_momentum: float = 0.9,
        bn_axis_name: str | None = None,
    ):
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}.")
        self.in_channels = in_channels
        bn = {"bn_momentum": bn_momentum, "bn_epsilon": 1e-3, "bn_axis_name": bn_axis_name}
        self.stem = ConvBNAct(
            in_channels, 32, 3, strides=stem_stride, activation=jax.nn.swish, rngs=rngs, **bn
        )
        total_blocks = sum(stage[-1] for stage in EFFICIENTNET_B0_STAGES)
        blocks = []
        cin = 32
        for expand_ratio, kernel, stride, cout, repeats in EFFICIENTNET_B0_STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(
                        cin,
                        cout,
                        expand_ratio=expand_ratio,
                        kernel_size=kernel,
                        strides=stride if i == 0 else 1,
                        se_ratio=se_ratio,
                        # Linearly increasing with depth, as in the reference implementation.
                        drop_path_rate=drop_path_rate * len(blocks) / total_blocks,
                        bn_momentum=bn_momentum,
                        bn_axis_name=bn_axis_name,
                        rngs=rngs,
                    )
                )
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = ConvBNAct(cin, 1280, 1, activation=jax.nn.swish, rngs=rngs, **bn)
        self._init_heads(
            feature_dim=1280,
            num_classes=num_classes,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
            dropout_rate=dropout_rate,
            rngs=rngs,
        )

    def encode(self, x: jax.Array) -> jax.Array:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return jnp.mean(self.head(x), axis=(1, 2))


# --------------------------------------------------------------------------- registry

MODELS: dict[str, type[_EncoderWithHeads]] = {
    "small_cnn": SmallCNN,
    "cnn1d": CNN1D,
    "mlp": MLP,
    "resnet18": ResNet18,
    "efficientnet_b0": EfficientNetB0,
}

_RANK_NAMES = {2: "(L, C) for 1-D signals", 3: "(H, W, C) for images"}


def create_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    projection_dim: int = 128,
    seed: int = 0,
    **kwargs: Any,
) -> nnx.Module:
    """Builds model ``name`` for examples of shape ``input_shape`` (without the batch dimension).

    Args:
      name: a key of ``MODELS``.
      num_classes: number of classes C of the classifier.
      input_shape: shape of one example, ``(H, W, C)`` for images or ``(L, C)`` for 1-D signals.
      projection_dim: output size P of the projection head.
      seed: seed of the ``nnx.Rngs`` used for initialisation (and dropout, if any).
      **kwargs: model-specific options (e.g. ``widths``, ``bn_axis_name``, ``dropout_rate``).

    Returns:
      The model, in train mode; ``model(x)`` on ``x`` [B, *input_shape] returns
      ``{"logits": [B, C], "features": [B, F], "projection": [B, P]}``.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model name {name!r}; known names: {sorted(MODELS)}.")
    cls = MODELS[name]
    input_shape = tuple(input_shape)
    if len(input_shape) != cls.input_rank or not all(
        isinstance(d, int | np.integer) and d > 0 for d in input_shape
    ):
        raise ValueError(
            f"input_shape for model {name!r} must be {_RANK_NAMES[cls.input_rank]} "
            f"(positive ints, no batch dimension), got {input_shape}."
        )
    shape_kwargs = cls._input_kwargs(tuple(int(d) for d in input_shape))
    clash = sorted(set(shape_kwargs) & set(kwargs))
    if clash:
        raise ValueError(f"{clash} are derived from input_shape; do not pass them as kwargs.")
    return cls(
        num_classes=num_classes,
        projection_dim=projection_dim,
        rngs=nnx.Rngs(seed),
        **shape_kwargs,
        **kwargs,
    )
