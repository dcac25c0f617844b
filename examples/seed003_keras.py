"""Chollet's first Keras example (seed 003, "2.5 첫 번째 예제 다시 살펴보기")
on fastnet: the listing as written for Keras, with only its imports changed
to fastnet.keras.

Changes from the seed's text, all marked below: the imports (and, as in the
book's listing, the labels one-hot encoded with to_categorical); its typos
fixed (``train_image`` -> ``train_images``, ``layer.Dense`` -> ``layers.Dense``,
``train_balels`` -> ``train_labels``, a missing parenthesis); and, where
fastnet's bundled 10,000 digits stand in for Keras's 60,000 (offline, no
~/.keras/datasets/mnist.npz), the sizes in the reshape calls come from the
data (8,000 / 2,000) instead of being 60000 / 10000.

    python examples/seed003_keras.py            # 5 epochs, as the seed
    python examples/seed003_keras.py --quick    # 1 epoch (CI)
"""

import argparse

# changed: the imports (Keras: from keras import models, layers, ...)
from fastnet.keras import models, layers
from fastnet.keras.datasets import mnist
from fastnet.keras.utils import to_categorical

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="1 epoch instead of 5")
parser.add_argument("--seed", type=int, default=None, help="fastnet.keras.utils.set_random_seed")
args = parser.parse_args()
if args.seed is not None:
    from fastnet.keras.utils import set_random_seed
    set_random_seed(args.seed)

(train_images, train_labels), (test_images, test_labels) = mnist.load_data()  # typo fixed

n_train, n_test = len(train_images), len(test_images)   # 60000, 10000 with Keras's file
train_images = train_images.reshape((n_train, 28 * 28))
train_images = train_images.astype('float32') / 255
test_images = test_images.reshape((n_test, 28 * 28))
test_images = test_images.astype('float32') / 255

# the book's label preparation (categorical_crossentropy takes one-hot rows)
train_labels = to_categorical(train_labels)
test_labels = to_categorical(test_labels)

network = models.Sequential()
network.add(layers.Dense(512, activation='relu', input_shape=(28 * 28, )))  # ) added
network.add(layers.Dense(10, activation='softmax'))                          # layer. fixed

network.compile(optimizer='rmsprop',
                loss='categorical_crossentropy',
                metrics=['accuracy'])
network.summary()

network.fit(train_images, train_labels, epochs=1 if args.quick else 5,     # typo fixed
            batch_size=128)

test_loss, test_acc = network.evaluate(test_images, test_labels)
print('test_acc:', test_acc)
