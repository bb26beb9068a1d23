"""The README's training-step example runs as written."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_training_step_example_runs_and_learns():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    nnx, optax = namespace["nnx"], namespace["optax"]

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(4, 16, rngs=rngs)
            self.classifier = nnx.Linear(16, 10, rngs=rngs)

        def __call__(self, x):
            h = jax.nn.relu(self.body(x))
            return {"logits": self.classifier(h), "projection": h}

    model = Tiny(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    labels = jnp.asarray(np.arange(32) % 10)
    images = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32) + jax.nn.one_hot(labels, 4) * 3
    losses = [float(namespace["train_step"](model, optimizer, images, labels)) for _ in range(20)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
