"""polyframe: write a model once, train it on PyTorch, TensorFlow or JAX.

Importing polyframe imports no framework; a backend's framework loads when it is first used.
"""

from __future__ import annotations

from . import datasets, losses, metrics, optimizers, schedules
from .backend import Backend, BuildOptions, Executable
from .callbacks import Callback, CSVLogger, History, ProgressDisplay
from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DataError,
    LabelError,
    ModelFileError,
    NonFiniteLossError,
    PolyframeError,
    ShapeError,
)
from .attention import MultiHeadAttention, TransformerEncoderBlock
from .hookspecs import hookimpl
from .layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GRU,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    LSTM,
    Layer,
    LayerNorm,
    MaxPool2D,
    Reshape,
)
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from .merging import Add, Concatenate, Multiply
from .model import Input, Model, Sequential
from .monitoring import EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau
from .optimizers import SGD, Adam, AdamW, RMSprop
from .plugins import default_backend_name, get_backend, registered_backends
from .schedules import Constant, CosineDecay, ExponentialDecay, StepDecay
from .trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # model
    "Input", "Model", "Add", "Concatenate", "Multiply",
    "Sequential", "Layer", "Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "Activation",
    "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "Conv1D", "Reshape", "BatchNorm",
    "LSTM", "GRU", "LayerNorm", "Embedding", "MultiHeadAttention", "TransformerEncoderBlock",
    # training
    "Trainer", "Callback", "History",
    "ProgressDisplay", "CSVLogger", "ModelCheckpoint", "EarlyStopping", "ReduceLROnPlateau",
    "LearningRateScheduler", "save_checkpoint", "load_checkpoint", "restore_checkpoint",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "Huber",
    "SGD", "Adam", "AdamW", "RMSprop",
    "Constant", "StepDecay", "ExponentialDecay", "CosineDecay",
    "losses", "optimizers", "schedules", "metrics", "datasets",
    # backends
    "Backend", "Executable", "BuildOptions", "hookimpl",
    "registered_backends", "get_backend", "default_backend_name",
    # errors
    "PolyframeError", "BackendNotFoundError", "BackendUnavailableError", "ConfigError",
    "ShapeError", "DataError", "LabelError", "NonFiniteLossError", "ModelFileError",
    "CheckpointError",
]
