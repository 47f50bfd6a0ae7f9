"""Dump every layer's output of a Keras model, for ``npcnn verify``. Needs TensorFlow (not npcnn).

    python tools/dump_keras.py MODEL.keras X.npy -o DUMP.npz [--gradients] [--keras2]

Keys are layer names; layers inside a nested model are ``outer/inner`` (the nested model's own output
is keyed by its name), the same names ``npcnn``'s ``model.activations`` uses. With ``--gradients`` the
dump also holds ``grad:cotangent`` (a seeded random cotangent) and ``grad:input`` (the gradient of
sum(cotangent * output) with respect to the input). ``--keras2`` loads with tf_keras (Keras 2).
Only open model files you trust with this tool: Keras may run code stored in them.
"""
import argparse
import zlib

import numpy as np


def layer_outputs(keras, model, x):
    """{key: output} for every layer, recursing into nested models (first call of each layer)."""
    out = {}

    def walk(m, inp, prefix):
        layers = [layer for layer in m.layers if type(layer).__name__ != "InputLayer"]
        symbolic = [layer.output for layer in layers]
        values = keras.Model(m.inputs, symbolic)(inp, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        for layer, value in zip(layers, values):
            key = prefix + layer.name
            out[key] = np.asarray(value)
            if hasattr(layer, "layers") and layer.layers:  # a nested model: compute its inner layers on its input
                inner_in = keras.Model(m.inputs, layer.input)(inp, training=False)
                walk(layer, inner_in, key + "/")

    walk(model, x, "")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("inputs", help=".npy input batch (N, H, W, C)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--gradients", action="store_true")
    p.add_argument("--keras2", action="store_true", help="load with tf_keras (Keras 2)")
    args = p.parse_args(argv)

    import tensorflow as tf
    if args.keras2:
        import tf_keras as keras
    else:
        import keras
    model = keras.models.load_model(args.model, compile=False)
    x = np.load(args.inputs).astype("float32")
    dump = layer_outputs(keras, model, x)
    if args.gradients:
        xt = tf.convert_to_tensor(x)
        rng = np.random.default_rng(zlib.crc32(args.model.encode()))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = model(xt, training=False)
        cot = rng.normal(size=tuple(y.shape)).astype("float32")
        dump["grad:cotangent"] = cot
        dump["grad:input"] = tape.gradient(y, xt, output_gradients=tf.constant(cot)).numpy()
    np.savez(args.output, **dump)
    print(f"wrote {args.output}: {len(dump)} arrays")


if __name__ == "__main__":
    main()
