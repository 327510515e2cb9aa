"""tinygrad_lm: a small, fast, readable reverse-mode autodiff framework for language models."""
from . import autograd, backend, cuda, distributed, dtypes, fast  # distributed imports MPI only in init_process_group
from .autograd import (
    Function,
    detect_anomaly,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import Device as device
from .backend import cuda_is_available, get_default_device, set_default_device
from .creation import (
    arange,
    cat,
    contiguous_format,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    manual_seed,
    maximum,
    minimum,
    ones,
    ones_like,
    preserve_format,
    rand,
    randint,
    randn,
    stack,
    strided,
    tensor,
    where,
    zeros,
    zeros_like,
)
from .dtypes import DType as dtype
from .dtypes import set_default_dtype
from .fast import allocator as _allocator  # noqa: F401 - freed arrays stay in the heap, from the first step on
from .fast import blas as _blas  # noqa: F401 - the fast ops: each module registers its own (tinygrad_lm.fast)
from .fast import fused_activations as _fused_activations  # noqa: F401
from .fast import fused_attention as _fused_attention  # noqa: F401
from .fast import fused_masked_fill as _fused_masked_fill  # noqa: F401
from .fast import fused_nn as _fused_nn  # noqa: F401
from .fast import fused_recurrent as _fused_recurrent  # noqa: F401
from .fast import fused_softmax as _fused_softmax  # noqa: F401
from .fast import in_place as _in_place  # noqa: F401
from .fast import layouts as _layouts  # noqa: F401
from .fast import powers as _powers  # noqa: F401
from .functions import *  # noqa: F403 - PyTorch's function forms (tl.exp(x), tl.max(x, 1), ...): see functions.py
from .functions import __all__ as _function_names
from .functions import get_default_dtype
from .gradcheck import GradcheckError, gradcheck
from .random import (
    Generator,
    bernoulli,
    initial_seed,
    multinomial,
    normal,
    poisson,
    rand_like,
    randint_like,
    randn_like,
    randperm,
    seed,
)
from .serialization import load, save
from .tensor import Tensor, return_types
from .threads import get_num_threads, set_num_threads

concat = concatenate = cat

# dtypes (tl.float32 == numpy.float32 == "float32"; see dtypes.DType)
float16 = dtypes.as_dtype("float16")
float32 = dtypes.as_dtype("float32")
float64 = dtypes.as_dtype("float64")
int8 = dtypes.as_dtype("int8")
int16 = dtypes.as_dtype("int16")
int32 = dtypes.as_dtype("int32")
int64 = dtypes.as_dtype("int64")
uint8 = dtypes.as_dtype("uint8")
bool = dtypes.as_dtype("bool")  # noqa: A001 - PyTorch's name for the dtype
half = float16
float = float32  # noqa: A001
double = float64
short = int16
int = int32  # noqa: A001
long = int64

__version__ = "0.1.0"

# The subpackages PyTorch programs reach as attributes (tl.nn, tl.optim, tl.utils.data), imported last:
# they build on everything above.
from . import nn, optim, utils  # noqa: E402

__all__ = [
    "Function", "Generator", "GradcheckError", "Tensor", "arange", "autograd", "backend", "bernoulli", "bool",
    "cat", "concat", "concatenate", "contiguous_format", "cuda", "cuda_is_available", "detect_anomaly", "device",
    "distributed", "double", "dtype", "empty", "empty_like", "enable_grad", "eye", "float", "float16", "float32",
    "fast", "float64", "from_numpy", "full", "full_like", "get_default_device", "get_default_dtype", "get_num_threads",
    "gradcheck", "half",
    "inference_mode", "initial_seed", "int16", "int32", "int64", "int8", "is_grad_enabled",
    "is_inference_mode_enabled", "linspace", "load", "logspace", "long", "manual_seed", "maximum", "minimum",
    "multinomial", "nn", "no_grad", "normal", "ones", "ones_like", "optim", "poisson", "preserve_format", "rand",
    "rand_like", "randint", "randint_like", "randn", "randn_like", "randperm", "return_types", "save", "seed",
    "set_default_device", "set_default_dtype", "set_grad_enabled", "set_num_threads", "short", "stack", "strided",
    "tensor", "uint8", "utils", "where", "zeros", "zeros_like", *_function_names,
]
