"""Seed 001's network, 784-16-16-10 (13,002 parameters), as a Keras model on
fastnet: sigmoid hidden layers as in the seed's picture, softmax output.

    python examples/seed001_mlp_keras.py [--quick]
"""

import argparse

from fastnet.keras import layers, models
from fastnet.keras.datasets import mnist
from fastnet.keras.utils import set_random_seed, to_categorical

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="1 epoch instead of 10")
args = parser.parse_args()
set_random_seed(1)

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape((len(x_train), 784)).astype("float32") / 255
x_test = x_test.reshape((len(x_test), 784)).astype("float32") / 255

model = models.Sequential([
    layers.Input(shape=(784,)),
    layers.Dense(16, activation="sigmoid"),
    layers.Dense(16, activation="sigmoid"),
    layers.Dense(10, activation="softmax"),
])
model.summary()          # Total params: 13,002
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, to_categorical(y_train, 10), epochs=1 if args.quick else 10,
          batch_size=32, validation_split=0.1, verbose=2)
loss, accuracy = model.evaluate(x_test, to_categorical(y_test, 10), verbose=0)
print("test loss %.4f, test accuracy %.4f" % (loss, accuracy))
