"""The TensorFlow side of training: polyframe's losses, gradient clipping, schedules and
optimizers written with low-level ops (not Keras), so that each follows polyframe's formula.

Keras' optimizers differ from it: Adam and RMSprop put epsilon under the square root ("epsilon
hat"), SGD and RMSprop fold ``lr`` into the momentum buffer (different under a schedule). Each
optimizer here owns an update counter; the scheduled learning rate is computed from it inside the
compiled update, in float64, so a changing rate never retraces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from polyframe.errors import ConfigError
from polyframe.losses import (
    PROBABILITY_FLOOR,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from polyframe.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

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
def _log_q(outputs: Tensor, from_logits: bool) -> Tensor:
    if from_logits:
        return tf.nn.log_softmax(outputs, axis=-1)
    return tf.math.log(tf.clip_by_value(outputs, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR))


def _cross_entropy(loss: CategoricalCrossentropy) -> LossFn:
    """``mean_i(-sum_k t'_ik log q_ik)``. Dense targets are written out rather than given to
    ``softmax_cross_entropy_with_logits``, whose gradient assumes rows summing exactly to 1."""
    s, from_logits = loss.label_smoothing, loss.from_logits
    if loss.sparse and from_logits and not s:
        return lambda z, y: tf.math.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z))
    if loss.sparse:
        def sparse(outputs: Tensor, y: Tensor) -> Tensor:
            log_q = _log_q(outputs, from_logits)
            picked = tf.gather(log_q, y, axis=1, batch_dims=1)
            return -tf.math.reduce_mean((1.0 - s) * picked + s * tf.math.reduce_mean(log_q, axis=1))
        return sparse

    def dense(outputs: Tensor, t: Tensor) -> Tensor:
        t = (1.0 - s) * t + s / outputs.shape[-1]
        return -tf.math.reduce_mean(tf.math.reduce_sum(t * _log_q(outputs, from_logits), axis=1))
    return dense


def _binary_from_probabilities(p: Tensor, y: Tensor) -> Tensor:
    q = tf.clip_by_value(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return -tf.math.reduce_mean(y * tf.math.log(q) + (1.0 - y) * tf.math.log(1.0 - q))


def _huber(delta: float) -> LossFn:
    def huber(outputs: Tensor, y: Tensor) -> Tensor:
        a = tf.math.abs(outputs - y)
        return tf.math.reduce_mean(tf.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta)))
    return huber


def _loss_function(loss: Loss, output_shape: tuple[int, ...]) -> tuple[LossFn, tf.TensorSpec]:
    """The loss formula and the signature of its targets."""
    dense_spec = tf.TensorSpec((None, *output_shape), tf.float32)
    if isinstance(loss, CategoricalCrossentropy):
        return _cross_entropy(loss), tf.TensorSpec((None,), tf.int64) if loss.sparse else dense_spec
    if isinstance(loss, BinaryCrossentropy):
        if loss.from_logits:
            return (lambda z, y: tf.math.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))), dense_spec
        return _binary_from_probabilities, dense_spec
    if isinstance(loss, MeanSquaredError):
        return (lambda z, y: tf.math.reduce_mean(tf.math.squared_difference(z, y))), dense_spec
    if isinstance(loss, MeanAbsoluteError):
        return (lambda z, y: tf.math.reduce_mean(tf.math.abs(z - y))), dense_spec
    if isinstance(loss, Huber):
        return _huber(loss.delta), dense_spec
    raise ConfigError(
        f"the tensorflow backend does not support loss {type(loss).__name__} ({loss.kind!r})"
    )


# -- clipping and schedules --------------------------------------------------------------------
def _clip(spec: Optimizer, grads: Sequence[Tensor]) -> list[Tensor]:
    """Value clipping, then ``g * clip_norm / max(norm, clip_norm)`` (``clip_by_global_norm``)."""
    grads = list(grads)
    if spec.clip_value is not None:
        grads = [tf.clip_by_value(g, -spec.clip_value, spec.clip_value) for g in grads]
    if spec.clip_norm is not None:
        grads, _ = tf.clip_by_global_norm(grads, spec.clip_norm)
    return list(grads)


class _TensorFlowOps:
    floor = staticmethod(tf.math.floor)
    cos = staticmethod(tf.math.cos)

    @staticmethod
    def minimum(x: Tensor, y: object) -> Tensor:
        return tf.math.minimum(x, tf.cast(y, x.dtype))

    @staticmethod
    def where(condition: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return tf.where(condition, x, y)


def _learning_rate(spec: Optimizer, update: Tensor) -> Tensor | float:
    """The rate of the update numbered ``update`` (from 1): ``schedule(update - 1)``."""
    if spec.constant_learning_rate is not None:
        return spec.constant_learning_rate
    step = tf.cast(update - 1, tf.float64)
    return tf.cast(spec.schedule.formula(step, _TensorFlowOps()), tf.float32)


# -- optimizers --------------------------------------------------------------------------------
def _slots(variables: Sequence[tf.Variable], name: str) -> list[tf.Variable]:
    return [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{v.name.split(':')[0]}.{name}")
            for v in variables]


class _Update(tf.Module):
    """An optimizer over fixed variables; ``__call__`` clips the gradients, computes this
    update's learning rate and applies the rule, as one compiled function (an XLA cluster when
    ``JIT_COMPILE_UPDATE``). ``step`` counts the updates applied."""

    def __init__(self, spec: Optimizer, variables: Sequence[tf.Variable]) -> None:
        super().__init__(name=spec.kind)
        self.spec = spec
        self.params = tuple(variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.rate = tf.Variable(spec.constant_learning_rate or 0.0, dtype=tf.float32,
                                trainable=False, name="learning_rate")
        """A constant learning rate, read by the compiled update (so it can change unretraced)."""
        self._compiled = tf.function(self._update, jit_compile=JIT_COMPILE_UPDATE, autograph=False)

    def _update(self, grads: Sequence[Tensor]) -> None:
        t = self.step.assign_add(1)
        lr = self.rate if self.spec.constant_learning_rate is not None else _learning_rate(self.spec, t)
        self.apply(_clip(self.spec, grads), lr, t)

    def apply(self, grads: Sequence[Tensor], lr: Tensor | float, t: Tensor) -> None:
        """Apply update number ``t`` (from 1) with learning rate ``lr``."""
        raise NotImplementedError

    def __call__(self, grads: Sequence[Tensor]) -> None:
        self._compiled(list(grads))


class _SGD(_Update):
    """``v = momentum * v + g``; ``p -= lr * v`` or, Nesterov, ``p -= lr * (g + momentum * v)``."""

    def __init__(self, spec: SGD, variables: Sequence[tf.Variable]) -> None:
        super().__init__(spec, variables)
        self.momentum, self.nesterov = float(spec.momentum), spec.nesterov
        self.velocity = _slots(variables, "velocity") if self.momentum else []

    def apply(self, grads: Sequence[Tensor], lr: Tensor | float, t: Tensor) -> None:
        if not self.momentum:
            for p, g in zip(self.params, grads):
                p.assign_sub(lr * g)
            return
        for p, g, v in zip(self.params, grads, self.velocity):
            v = v.assign(self.momentum * v + g)
            p.assign_sub(lr * (g + self.momentum * v if self.nesterov else v))


class _Adam(_Update):
    """``p -= lr * ((m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)`` (bias terms in
    float64; ``wd`` is AdamW's weight decay, 0 for Adam)."""

    def __init__(self, spec: Adam | AdamW, variables: Sequence[tf.Variable]) -> None:
        super().__init__(spec, variables)
        self.beta_1, self.beta_2 = float(spec.beta_1), float(spec.beta_2)
        self.epsilon = float(spec.epsilon)
        self.weight_decay = float(spec.weight_decay) if isinstance(spec, AdamW) else 0.0
        self.m = _slots(variables, "m")
        self.v = _slots(variables, "v")

    def apply(self, grads: Sequence[Tensor], lr: Tensor | float, t: Tensor) -> None:
        t = tf.cast(t, tf.float64)
        correction_1 = tf.cast(1.0 - tf.math.pow(tf.constant(self.beta_1, tf.float64), t), tf.float32)
        correction_2 = tf.cast(1.0 - tf.math.pow(tf.constant(self.beta_2, tf.float64), t), tf.float32)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m = m.assign(self.beta_1 * m + (1.0 - self.beta_1) * g)
            v = v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.math.square(g))
            direction = (m / correction_1) / (tf.math.sqrt(v / correction_2) + self.epsilon)
            if self.weight_decay:
                direction = direction + self.weight_decay * p
            p.assign_sub(lr * direction)


class _RMSprop(_Update):
    """``s = rho s + (1-rho) g^2``; ``d = sqrt(s - a^2) + eps`` (centered, ``a`` the mean
    gradient) or ``sqrt(s) + eps``; ``p -= lr * g / d``, or through ``b = momentum b + g / d``."""

    def __init__(self, spec: RMSprop, variables: Sequence[tf.Variable]) -> None:
        super().__init__(spec, variables)
        self.rho, self.epsilon, self.momentum = float(spec.rho), float(spec.epsilon), float(spec.momentum)
        self.square = _slots(variables, "square")
        self.average = _slots(variables, "average") if spec.centered else [None] * len(self.params)
        self.buffer = _slots(variables, "momentum") if self.momentum else [None] * len(self.params)

    def apply(self, grads: Sequence[Tensor], lr: Tensor | float, t: Tensor) -> None:
        rho = self.rho
        for p, g, s, a, b in zip(self.params, grads, self.square, self.average, self.buffer):
            s = s.assign(rho * s + (1.0 - rho) * tf.math.square(g))
            if a is not None:
                a = a.assign(rho * a + (1.0 - rho) * g)
                s = s - tf.math.square(a)
            direction = g / (tf.math.sqrt(s) + self.epsilon)
            if b is not None:
                direction = b.assign(self.momentum * b + direction)
            p.assign_sub(lr * direction)


_OPTIMIZERS: dict[type[Optimizer], type[_Update]] = {
    SGD: _SGD, Adam: _Adam, AdamW: _Adam, RMSprop: _RMSprop,
}


def _optimizer(spec: Optimizer, variables: Sequence[tf.Variable]) -> _Update:
    update = _OPTIMIZERS.get(type(spec))
    if update is None:
        raise ConfigError(
            f"the tensorflow backend does not support optimizer {type(spec).__name__} "
            f"({spec.kind!r}); use one of {', '.join(t.__name__ for t in _OPTIMIZERS)}"
        )
    return update(spec, variables)
