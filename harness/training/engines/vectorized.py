"""Engine `vectorized`: R seeds of one dense configuration as one stacked model (kernels
[R, in, out]); each replica gathers its own batches and dropout masks, batched matmuls, the
optimizer's update rule on the stacked tensors. Every operation is per replica, so a seed's result
does not depend on R, its slot or its companions; it is not bit-identical to `fit` (other
reduction kernels). TensorFlow only; `resolve` picks what runs elsewhere.

Seen here (TF 2.21 CPU): the per-replica independence rests on oneDNN's batched matmul (with
TF_ENABLE_ONEDNN_OPTS=0 a replica's bits changed with R, so vectorized then runs exact).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from harness.job.seeds import layer_seed
from harness.training.data import Dataset
from harness.training.engines.base import ENGINE_CACHE, Engine, Tensors, Trained, batch_plan
from harness.training.models import BuilderInfo, dense_initial_weights

_M32 = 0xFFFFFFFF
REPLICAS = 8  # every stack has this many replicas: one shape, so one kernel choice, for any R


def _fmix32(h: Any) -> Any:
    """MurmurHash3's 32-bit finaliser on int64 tensors holding uint32 values."""
    import tensorflow as tf
    b = tf.bitwise
    h = b.bitwise_xor(h, b.right_shift(h, 16))
    h = b.bitwise_and(h * 0x85EBCA6B, _M32)
    h = b.bitwise_xor(h, b.right_shift(h, 13))
    h = b.bitwise_and(h * 0xC2B2AE35, _M32)
    return b.bitwise_xor(h, b.right_shift(h, 16))


def _keep_mask(seeds: Any, step: Any, shape: Any, rate: float) -> Any:
    """Dropout keep-mask [R, rows, cols] (float32): a counter-based hash of (replica's layer seed,
    step, position), so a replica's masks depend on its own noise seed only."""
    import tensorflow as tf
    b = tf.bitwise
    pos = tf.reshape(tf.range(shape[1] * shape[2], dtype=tf.int64), [1, shape[1], shape[2]])
    key = _fmix32(b.bitwise_xor(b.bitwise_and(step, _M32), _fmix32(seeds)))[:, None, None]
    h = _fmix32(b.bitwise_xor(pos, key))
    u = tf.cast(b.right_shift(h, 8), tf.float32) * (1.0 / (1 << 24))
    return tf.cast(u >= rate, tf.float32)


def _add_bias(z: Any, bias: Any) -> Any:
    """z [R, B, out] + bias [R, out], whose bias gradient sums the batch with a batched matmul:
    TensorFlow's sum over a middle axis gave a replica other bits in another slot of the stack."""
    import tensorflow as tf

    @tf.custom_gradient
    def add(z: Any, bias: Any) -> Any:
        def grad(dz: Any) -> tuple[Any, Any]:
            ones = tf.ones_like(dz[:, :, :1])
            return dz, tf.linalg.matmul(ones, dz, transpose_a=True)[:, 0, :]
        return z + bias[:, None, :], grad

    return add(z, bias)


def _update(name: str, params: list[Any], grads: list[Any], slots: list[Any], step: Any,
            lr: Any) -> tuple[list[Any], list[Any]]:
    """One step of Keras's adam / sgd (momentum 0.9) / rmsprop update rules, elementwise, with
    Keras's default constants."""
    import tensorflow as tf
    new_p, new_s = [], []
    if name == "adam":
        t = tf.cast(step, tf.float32)
        alpha = lr * tf.sqrt(1 - tf.pow(0.999, t)) / (1 - tf.pow(0.9, t))
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            m, v = slots[2 * i], slots[2 * i + 1]
            m = m + (g - m) * (1 - 0.9)
            v = v + (tf.square(g) - v) * (1 - 0.999)
            new_p.append(p - m * alpha / (tf.sqrt(v) + 1e-7))
            new_s += [m, v]
    elif name == "sgd":
        for p, g, m in zip(params, grads, slots, strict=True):
            m = m * 0.9 - g * lr
            new_p.append(p + m)
            new_s.append(m)
    else:
        for p, g, v in zip(params, grads, slots, strict=True):
            v = 0.9 * v + (1 - 0.9) * tf.square(g)
            # DivNoNan (the denominator is > 0): Grappler rewrites x / sqrt(y) to x * rsqrt(y),
            # whose vectorised and scalar paths differ in the last bit (so by slot)
            new_p.append(p - tf.math.divide_no_nan(lr * g, tf.sqrt(v + 1e-7)))
            new_s.append(v)
    return new_p, new_s


def _vectorized_loop(activation: str, dropout: float, optimizer: str, layers: int, jit: bool) -> Any:
    """The whole training of R stacked dense models as one tf.function; returns test probabilities
    [R, n_test, classes]. Traced once with every dimension unknown, so one graph serves every R
    (graph rewrites that depend on known shapes could otherwise change a seed's bits with R)."""
    import keras
    import tensorflow as tf
    act = keras.activations.get(activation)
    n_slots = 2 if optimizer == "adam" else 1

    def forward(params: list[Any], x: Any, dseeds: Any, step: Any) -> Any:
        n = len(params) // 2
        for i in range(n):
            x = _add_bias(tf.linalg.matmul(x, params[2 * i]), params[2 * i + 1])
            if i < n - 1:
                x = act(x)
                if dropout > 0 and dseeds is not None:
                    x = x * _keep_mask(dseeds[:, i], step, tf.shape(x), dropout) / (1 - dropout)
        return x

    def train_step(params: list[Any], slots: list[Any], step: Any, x: Any, y: Any, idx: Any,
                   dseeds: Any, lr: Any) -> tuple[list[Any], list[Any], Any]:
        xb, yb = tf.gather(x, idx), tf.gather(y, idx)
        with tf.GradientTape() as tape:
            tape.watch(params)
            logits = forward(params, xb, dseeds, step)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)
            loss = tf.reduce_sum(tf.reduce_mean(ce, axis=1))  # replicas' losses add: grads stay apart
        grads = tape.gradient(loss, params)
        step = step + 1
        params, slots = _update(optimizer, params, grads, slots, step, lr)
        return params, slots, step

    def spec(rank: int, dtype: Any = tf.float32) -> Any:
        return tf.TensorSpec([None] * rank, dtype)

    @tf.function(jit_compile=jit, input_signature=[
        spec(2), spec(1, tf.int32), spec(2), [spec(3 - i % 2) for i in range(2 * layers + 2)],
        spec(4, tf.int32), spec(3, tf.int32), spec(2, tf.int64), spec(0)])
    def loop(x: Any, y: Any, x_test: Any, params: list[Any], full: Any, short: Any, dseeds: Any,
             lr: Any) -> Any:
        slots = [tf.zeros_like(p) for p in params for _ in range(n_slots)]
        step = tf.constant(0, tf.int64)
        for e in tf.range(tf.shape(full)[0]):
            for s in tf.range(tf.shape(full)[2]):
                params, slots, step = train_step(params, slots, step, x, y, full[e, :, s], dseeds, lr)
            if tf.shape(short)[2] > 0:
                params, slots, step = train_step(params, slots, step, x, y, short[e], dseeds, lr)
        return tf.nn.softmax(forward(params, x_test[None], None, step))

    return loop


class VectorizedEngine(Engine):
    """Engine `vectorized` (see the module docstring) for the `dense` builder."""

    name = "vectorized"
    batched = True

    def __init__(self, builder: BuilderInfo, loss: str, backend: str, xla: bool = False,
                 report: tuple[str, ...] = ()) -> None:
        super().__init__(builder, loss, backend, xla, report)
        self._loops: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._tensors = Tensors(flat=True)

    def _loop(self, activation: str, dropout: float, optimizer: str, layers: int) -> Any:
        key = (activation, dropout, optimizer, layers)
        if key not in self._loops:
            self._loops[key] = _vectorized_loop(activation, dropout, optimizer, layers, self.xla)
            if len(self._loops) > ENGINE_CACHE:
                self._loops.popitem(last=False)
        self._loops.move_to_end(key)
        return self._loops[key]

    def train_many(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
                   seeds: list[dict[str, int]]) -> list[Trained]:
        """Trainings of one configuration, one per seed dict, in stacks of `REPLICAS` (the last
        one padded with copies of its first seeds, whose outputs are dropped)."""
        out: list[Trained] = []
        for i in range(0, len(seeds), REPLICAS):
            block = seeds[i:i + REPLICAS]
            out += self._train_block(ds, training, model_args, block + [block[0]] * (REPLICAS - len(block)))
            del out[len(out) - (REPLICAS - len(block)):]
        return out

    def _train_block(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
                     seeds: list[dict[str, int]]) -> list[Trained]:
        """One stack of exactly `REPLICAS` trainings (outputs: test probabilities [n_eval, C] each)."""
        import keras
        input_dim = int(np.prod(ds.x_train.shape[1:]))
        inits = [dense_initial_weights(input_dim, ds.n_classes, s["init"], bitflip=s.get("bitflip", 0), **model_args)
                 for s in seeds]
        params = [np.stack(p) for p in zip(*inits, strict=True)]
        plans = [batch_plan(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]), s["order"])
                 for s in seeds]
        full = np.stack([p[0] for p in plans], axis=1)      # [E, R, S, B]
        short = np.stack([p[1] for p in plans], axis=1)     # [E, R, b]
        layers = int(model_args.get("layers", 1))
        dseeds = np.array([[layer_seed(s["noise"], i) for i in range(layers)] for s in seeds], np.int64)
        x, y, x_test = self._tensors.get(ds)
        loop = self._loop(str(model_args.get("activation", "relu")), float(model_args.get("dropout", 0.0)),
                          training["optimizer"], layers)
        probs = loop(x, y, x_test, params, full, short, dseeds, np.float32(training["learning_rate"]))
        return [Trained(p) for p in keras.ops.convert_to_numpy(probs)]

    def train(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
              seeds: dict[str, int]) -> Trained:
        """One training: a stack of one (padded)."""
        return self.train_many(ds, training, model_args, [seeds])[0]
