"""Train many seeds of the recipe and of candidates side by side on a GPU, under Keras' JAX backend.

Candidates differ from the recipe by a few validation images in 6,000, as much as one run's noise,
so three seeds cannot rank them. Here one compiled program trains every seed of a candidate at once
(jax.vmap over the seeds' weights), with analysis.py's own network, optimizer, schedule, loss,
augmentation and per-seed validation split, and each candidate is set against the recipe seed by
seed. Not the script's own runs (TensorFlow, tf.data): the same recipe, not the same numbers.

    python bench/seeds.py [--seeds 32] [--budget 600] [--only "recipe,8 epochs"]
"""
import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import jax
import jax.numpy as jnp
import keras
import numpy as np

import analysis


@dataclasses.dataclass(frozen=True)
class Recipe:
    """analysis.py's training recipe (its defaults), and what a candidate changes."""

    epochs: int = 9
    dropout: float = 0.1
    smoothing: float = 0.1
    degrees: float = 8
    zoom: float = 0.08
    shift: float = 0.08
    lr: float = 5e-3
    batch: int = 128
    precision: str = "mixed_bfloat16"


CANDIDATES = {
    "recipe": Recipe(),
    "dropout 0.2": Recipe(dropout=0.2),
    "label smoothing 0.05": Recipe(smoothing=0.05),
    "augmentation 6 degrees, 6 %": Recipe(degrees=6, zoom=0.06, shift=0.06),
    "augmentation 10 degrees, 10 %": Recipe(degrees=10, zoom=0.1, shift=0.1),
    "peak lr 3.5e-3": Recipe(lr=3.5e-3),
    "peak lr 7e-3": Recipe(lr=7e-3),
    "8 epochs": Recipe(epochs=8),
    "10 epochs": Recipe(epochs=10),
}
VALIDATION_SPLIT = 0.1  # analysis.py's default
SHIFTS = ("image", "down", "up", "right", "left")  # analysis.shifted_views' order
# Test-time view sets, scored on every model: the recipe averages the image and its four one-pixel
# shifts; the others add a rotation or zoom about the centre (as fractions of random_affine's ranges).
EXTRA_VIEWS = {"rotated +6": (0.75, 0, 0), "rotated -6": (-0.75, 0, 0), "zoomed +6 %": (0, 0.75, 0.75),
               "zoomed -6 %": (0, -0.75, -0.75)}
VIEW_SETS = {"one view": ("image",), "five views": SHIFTS,
             "five and rotated by 6 degrees": (*SHIFTS, "rotated +6", "rotated -6"),
             "five and zoomed by 6 %": (*SHIFTS, "zoomed +6 %", "zoomed -6 %")}


def build(recipe, total_steps):
    """The recipe's network, compiled by analysis.py, with the candidate's dropout and label smoothing."""
    keras.mixed_precision.set_global_policy(recipe.precision)
    network = analysis.build_model(analysis.batchnorm_momentum(total_steps))
    model = analysis.compile_model(network, recipe.lr, total_steps)
    next(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)).rate = recipe.dropout
    model.optimizer.build(model.trainable_variables)
    return model, keras.losses.CategoricalCrossentropy(label_smoothing=recipe.smoothing)


def initial_state(recipe, seeds, total_steps):
    """Each seed's initial weights, BatchNorm statistics, dropout generator and optimizer state, stacked."""
    states = []
    for seed in seeds:
        keras.utils.set_random_seed(int(seed))
        model, _ = build(recipe, total_steps)
        states.append(tuple([v.value for v in variables] for variables in
                            (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)))
    return jax.tree.map(lambda *values: jnp.stack(values), *states)


def splits(seeds, count):
    """Each seed's fit and validation indices into the training set, drawn by analysis.split_holdout as the script does.

    (The quick check's --train-samples takes the first images, where split_data draws them at random.)"""
    indices = np.arange(count)
    parts = [analysis.split_holdout(indices, indices, VALIDATION_SPLIT, np.random.default_rng(int(seed)))
             for seed in seeds]
    return np.stack([fit for (fit, _), _ in parts]), np.stack([held for _, (held, _) in parts])


def stream_indices(seed, fit_count, total_steps, batch):
    """Indices into a seed's fit set for every step: reshuffled each pass, batches running across passes."""
    rng = np.random.default_rng([seed, 1])
    passes = -(-total_steps * batch // fit_count)
    order = np.concatenate([rng.permutation(fit_count) for _ in range(passes)])
    return order[:total_steps * batch].reshape(total_steps, batch)


def trainer(recipe, model, loss, images, labels):
    """A compiled function running every step for all seeds at once: (state, stream, seed keys) -> state."""
    amounts = jnp.array([recipe.degrees / 8, recipe.zoom / 0.08, recipe.zoom / 0.08, recipe.shift / 0.08,
                         recipe.shift / 0.08], jnp.float32)  # random_affine's defaults are 8 degrees and 8 %

    def one_seed(state, chosen, key):
        trainable, non_trainable, optimizer_variables = state
        uniforms = jax.random.uniform(key, (len(chosen), 5), minval=-1, maxval=1) * amounts
        inputs = analysis.random_affine(analysis.prepare_images(images[chosen]), uniforms)
        targets = analysis.one_hot(labels[chosen])

        def loss_of(trainable):
            outputs, new_non_trainable = model.stateless_call(trainable, non_trainable, inputs, training=True)
            return loss(targets, outputs), new_non_trainable

        (_, non_trainable), gradients = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, gradients, trainable)
        return trainable, non_trainable, optimizer_variables

    @jax.jit
    def train(state, stream, seed_keys):
        def step(state, inputs):
            chosen, number = inputs
            keys = jax.vmap(jax.random.fold_in, (0, None))(seed_keys, number)
            return jax.vmap(one_seed)(state, chosen, keys), None
        return jax.lax.scan(step, state, (stream, jnp.arange(len(stream))))[0]

    return train


def evaluator(evaluation_model):
    """A compiled function: one seed's weights and a batch of prepared images -> log-probabilities, in float32."""
    @jax.jit
    def log_probabilities(trainable, non_trainable, inputs):
        probabilities, _ = evaluation_model.stateless_call(trainable, non_trainable, inputs, training=False)
        return jnp.log(jnp.maximum(probabilities, jnp.finfo(jnp.float32).tiny))
    return log_probabilities


def views(images):
    """Every view of uint8 images that a view set names, prepared: {name: N x 28 x 28 x 1}."""
    prepared = dict(zip(SHIFTS, (np.asarray(analysis.prepare_images(view)) for view in analysis.shifted_views(images))))
    for name, (angle, zoom_x, zoom_y) in EXTRA_VIEWS.items():
        uniforms = np.tile(np.array([[angle, zoom_x, zoom_y, 0, 0]], np.float32), (len(images), 1))
        moved = np.asarray(analysis.random_affine(prepared["image"], uniforms))
        prepared[name] = np.round(moved * 255) / 255  # back to 8 bits, as a picture is
    return prepared


def accuracies(log_probabilities, weights, prepared_views, labels):
    """Each view set's accuracy for one seed's weights, the views' log-probabilities averaged."""
    logs = {name: np.concatenate([np.asarray(log_probabilities(*weights, view[start:start + 2000]))
                                  for start in range(0, len(view), 2000)])
            for name, view in prepared_views.items()}
    return {name: float(np.mean(np.mean([logs[view] for view in names], 0).argmax(1) == labels))
            for name, names in VIEW_SETS.items()}


def run(name, recipe, seeds, data, test_views):
    """Train every seed of one candidate; score each on its validation split and the test set."""
    started = time.perf_counter()
    fit_indices, validation_indices = splits(seeds, len(data.x_train))
    fit_count = fit_indices.shape[1]
    steps_per_epoch, _ = analysis.training_steps(fit_count, recipe.batch)
    total_steps = recipe.epochs * steps_per_epoch
    model, loss = build(recipe, total_steps)
    state = initial_state(recipe, seeds, total_steps)
    stream = np.stack([fit[stream_indices(seed, fit_count, total_steps, recipe.batch)]
                       for seed, fit in zip(seeds, fit_indices)], axis=1)  # steps x seeds x batch
    seed_keys = jax.vmap(jax.random.PRNGKey)(jnp.array(seeds))
    train = trainer(recipe, model, loss, jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    arguments = (state, jnp.asarray(stream), seed_keys)
    compiled = train.lower(*arguments).compile()
    compiled_at = time.perf_counter()
    trained = jax.block_until_ready(compiled(*arguments))
    trained_seconds = time.perf_counter() - compiled_at
    keras.mixed_precision.set_global_policy("float32")  # evaluated as analysis.py does: a float32 copy
    log_probabilities = evaluator(analysis.build_model(analysis.batchnorm_momentum(total_steps)))
    rows = []
    for number, seed in enumerate(seeds):
        weights = [[value[number] for value in group] for group in trained[:2]]  # its weights and statistics
        row = {"seed": int(seed)}
        held = validation_indices[number]
        for split, (split_views, split_labels) in {"validation": (views(data.x_train[held]), data.y_train[held]),
                                                   "test": (test_views, data.y_test)}.items():
            for view_set, accuracy in accuracies(log_probabilities, weights, split_views, split_labels).items():
                row[f"{split}, {view_set}"] = accuracy
        rows.append(row)
    return {"candidate": name, "recipe": dataclasses.asdict(recipe), "seeds": rows,
            "prepare_and_compile_seconds": compiled_at - started,
            "train_seconds": trained_seconds, "seconds": time.perf_counter() - started}


def summary(result, baseline):
    """One line: the candidate's mean validation and test accuracy, and its paired difference from the recipe."""
    def column(rows, key):
        return np.array([row[key] for row in rows]) * 100

    def mean_and_error(values, sign=""):
        return f"{values.mean():{sign}.3f} ± {values.std(ddof=1) / len(values) ** 0.5:.3f}"

    validation, test = column(result["seeds"], "validation, five views"), column(result["seeds"], "test, five views")
    line = (f"{result['candidate']:32s} validation {mean_and_error(validation)}  test {test.mean():.3f} "
            f"(median {np.median(test):.2f}, {np.mean(test >= 99.65) * 100:.0f} % of seeds >= 99.65)")
    if baseline is not None and baseline is not result:  # run with the recipe
        difference = validation - column(baseline["seeds"], "validation, five views")
        line += f"  paired validation difference {mean_and_error(difference, '+')}"
    return (line + f"  [{result['prepare_and_compile_seconds']:.0f} s preparing and compiling, "
                   f"{result['train_seconds']:.0f} s training, {result['seconds']:.0f} s in all]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=32, help="seeds 1..N of every candidate")
    parser.add_argument("--budget", type=float, default=600, help="start no candidate after this many seconds "
                        "(all nine took 651 s on an H200)")
    parser.add_argument("--only", help="comma-separated candidate names (default: all, in order)")
    parser.add_argument("--train-samples", type=int, help="train on this many images (a quick check of the script)")
    parser.add_argument("--epochs", type=int, help="every candidate's epochs (a quick check of the script)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for seeds.jsonl")
    args = parser.parse_args()
    analysis.keras = keras  # import_libraries would force the TensorFlow backend
    keras.config.set_image_data_format("channels_last")
    jax.config.update("jax_default_matmul_precision", "highest")  # float32 evaluated in float32 on a GPU, not TF32
    setting = {"command": sys.argv, "jax": jax.__version__, "keras": keras.__version__,
               "device": str(jax.devices()[0].device_kind), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(setting, flush=True)
    data = analysis.load_data()
    if args.train_samples:
        count = args.train_samples
        data = dataclasses.replace(data, x_train=data.x_train[:count], y_train=data.y_train[:count])
    seeds = list(range(1, args.seeds + 1))
    names = args.only.split(",") if args.only else list(CANDIDATES)
    out = Path(args.out) / "seeds.jsonl"
    test_views = views(data.x_test)
    started, baseline = time.perf_counter(), None
    for name in names:
        if time.perf_counter() - started > args.budget:
            print(f"budget spent: {name} and after not run", flush=True)
            break
        recipe = CANDIDATES[name] if not args.epochs else dataclasses.replace(CANDIDATES[name], epochs=args.epochs)
        result = {**run(name, recipe, seeds, data, test_views), **setting}
        with open(out, "a") as file:
            file.write(json.dumps(result) + "\n")
        baseline = result if name == "recipe" else baseline  # the others are set against it, seed by seed
        print(summary(result, baseline), flush=True)
        if name == "recipe":
            for view_set in VIEW_SETS:
                means = [np.mean([row[f"{split}, {view_set}"] for row in result["seeds"]]) * 100
                         for split in ("validation", "test")]
                print(f"  recipe, {view_set:30s} validation {means[0]:.3f}  test {means[1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
