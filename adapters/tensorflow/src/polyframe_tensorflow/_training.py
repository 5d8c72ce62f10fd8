"""The TensorFlow side of training: polyframe's losses and optimizers written with low-level ops."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from polyframe.errors import ConfigError
from polyframe.losses import (
    PROBABILITY_FLOOR,
    Loss,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from polyframe.optimizers import SGD, Adam, Optimizer

from ._startup import quiet_startup

with quiet_startup():
    import tensorflow as tf

__all__ = ["JIT_COMPILE_UPDATE", "_loss_function", "_optimizer"]

JIT_COMPILE_UPDATE = True
"""Whether the optimizer update is XLA-compiled on its own. On: XLA fuses each variable's chain
of element-wise slot updates into one pass, about 10% off a small CNN's step on CPU."""

Tensor = tf.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]


# -- losses ------------------------------------------------------------------------------------
def _cross_entropy_from_logits(outputs: Tensor, y: Tensor) -> Tensor:
    return tf.math.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=outputs))


def _cross_entropy_from_probabilities(outputs: Tensor, y: Tensor) -> Tensor:
    p = tf.gather(outputs, y, axis=1, batch_dims=1)
    p = tf.clip_by_value(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return tf.math.reduce_mean(-tf.math.log(p))


def _mean_squared_error(outputs: Tensor, y: Tensor) -> Tensor:
    return tf.math.reduce_mean(tf.math.squared_difference(outputs, y))


def _loss_function(loss: Loss, output_shape: tuple[int, ...]) -> tuple[LossFn, tf.TensorSpec]:
    """The loss formula and the signature of its targets."""
    if isinstance(loss, SparseCategoricalCrossentropy):
        formula = _cross_entropy_from_logits if loss.from_logits else _cross_entropy_from_probabilities
        return formula, tf.TensorSpec((None,), tf.int64)
    if isinstance(loss, MeanSquaredError):
        return _mean_squared_error, tf.TensorSpec((None, *output_shape), tf.float32)
    raise ConfigError(
        f"the tensorflow backend does not support loss {type(loss).__name__} ({loss.kind!r}); "
        "use SparseCategoricalCrossentropy or MeanSquaredError"
    )


# -- optimizers --------------------------------------------------------------------------------
def _slots(variables: Sequence[tf.Variable], name: str) -> list[tf.Variable]:
    return [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{v.name.split(':')[0]}.{name}")
            for v in variables]


class _Update(tf.Module):
    """An optimizer over fixed variables; ``__call__`` runs its update as one compiled function
    (an XLA cluster when ``JIT_COMPILE_UPDATE``)."""

    def __init__(self, name: str, variables: Sequence[tf.Variable]) -> None:
        super().__init__(name=name)
        self.params = tuple(variables)
        self._compiled = tf.function(self.apply, jit_compile=JIT_COMPILE_UPDATE, autograph=False)

    def apply(self, grads: Sequence[Tensor]) -> None:
        raise NotImplementedError

    def __call__(self, grads: Sequence[Tensor]) -> None:
        self._compiled(list(grads))


class _SGD(_Update):
    """``v = momentum * v + g``; ``p -= lr * v`` (plain ``p -= lr * g`` when momentum is 0)."""

    def __init__(self, spec: SGD, variables: Sequence[tf.Variable]) -> None:
        super().__init__("sgd", variables)
        self.learning_rate = float(spec.learning_rate)
        self.momentum = float(spec.momentum)
        self.velocity = _slots(variables, "velocity") if self.momentum else []

    def apply(self, grads: Sequence[Tensor]) -> None:
        if not self.momentum:
            for p, g in zip(self.params, grads):
                p.assign_sub(self.learning_rate * g)
            return
        for p, g, v in zip(self.params, grads, self.velocity):
            p.assign_sub(self.learning_rate * v.assign(self.momentum * v + g))


class _Adam(_Update):
    """``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`` (bias terms in float64)."""

    def __init__(self, spec: Adam, variables: Sequence[tf.Variable]) -> None:
        super().__init__("adam", variables)
        self.learning_rate = float(spec.learning_rate)
        self.beta_1, self.beta_2 = float(spec.beta_1), float(spec.beta_2)
        self.epsilon = float(spec.epsilon)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.m = _slots(variables, "m")
        self.v = _slots(variables, "v")

    def apply(self, grads: Sequence[Tensor]) -> None:
        t = tf.cast(self.step.assign_add(1), tf.float64)
        correction_1 = tf.cast(1.0 - tf.math.pow(tf.constant(self.beta_1, tf.float64), t), tf.float32)
        correction_2 = tf.cast(1.0 - tf.math.pow(tf.constant(self.beta_2, tf.float64), t), tf.float32)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m = m.assign(self.beta_1 * m + (1.0 - self.beta_1) * g)
            v = v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.math.square(g))
            m_hat, v_hat = m / correction_1, v / correction_2
            p.assign_sub(self.learning_rate * m_hat / (tf.math.sqrt(v_hat) + self.epsilon))


def _optimizer(spec: Optimizer, variables: Sequence[tf.Variable]) -> _Update:
    if isinstance(spec, Adam):
        return _Adam(spec, variables)
    if isinstance(spec, SGD):
        return _SGD(spec, variables)
    raise ConfigError(
        f"the tensorflow backend does not support optimizer {type(spec).__name__} "
        f"({spec.kind!r}); use SGD or Adam"
    )
