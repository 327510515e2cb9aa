"""tinygrad_lm: a small, fast, readable reverse-mode autodiff framework for language models."""
from . import backend, distributed  # distributed imports MPI only in init_process_group
from .autograd import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import cuda_is_available, get_default_device, get_default_dtype, set_default_device, set_default_dtype
from .creation import (
    arange,
    cat,
    eye,
    from_numpy,
    full,
    full_like,
    manual_seed,
    maximum,
    minimum,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)
from .gradcheck import GradcheckError, gradcheck
from .serialization import load, save
from .tensor import Tensor

float16 = backend.check_dtype("float16")
float32 = backend.check_dtype("float32")
float64 = backend.check_dtype("float64")
int32 = backend.check_dtype("int32")
int64 = backend.check_dtype("int64")
bool = backend.check_dtype("bool")  # noqa: A001 - PyTorch's name for the dtype
float = float32  # noqa: A001
double = float64
long = int64

__version__ = "0.1.0"

__all__ = [
    "GradcheckError", "Tensor", "arange", "backend", "bool", "cat", "cuda_is_available", "detect_anomaly", "double",
    "distributed",
    "enable_grad", "eye", "float", "float16", "float32", "float64", "from_numpy", "full", "full_like",
    "get_default_device", "get_default_dtype", "gradcheck", "int32", "int64", "is_grad_enabled", "load", "long",
    "manual_seed", "maximum", "minimum", "no_grad", "ones", "ones_like", "rand", "randint", "randn", "save",
    "set_default_device", "set_default_dtype", "set_grad_enabled", "stack", "tensor", "where", "zeros", "zeros_like",
]
