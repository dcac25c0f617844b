"""The losses fastnet.keras supports, by Keras's names, and the fastnet
output layer each trains with."""

__all__ = ["resolve"]

# Keras's name (and aliases) -> the canonical name
_NAMES = {"categorical_crossentropy": "categorical_crossentropy",
          "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
          "binary_crossentropy": "binary_crossentropy",
          "mse": "mse", "mean_squared_error": "mse"}


def resolve(loss):
    """The canonical name of ``loss``; anything else is a clear error."""
    if loss is None:
        raise ValueError("compile: loss is required; fastnet.keras supports %s"
                         % ", ".join(repr(k) for k in _NAMES))
    if not isinstance(loss, str):
        raise NotImplementedError("compile: loss %r is not supported; give one of %s by name"
                                  % (loss, ", ".join(repr(k) for k in _NAMES)))
    if loss not in _NAMES:
        raise ValueError("compile: unknown loss %r; fastnet.keras supports %s"
                         % (loss, ", ".join(repr(k) for k in _NAMES)))
    return _NAMES[loss]
