"""Language models: n-grams, Elman RNN / LSTM / GRU LMs, a Transformer LM, generation and training."""
from .generation import generate, sample_from_logits
from .models import (
    GRULM,
    LSTMLM,
    RNNLM,
    Block,
    CausalSelfAttention,
    RecurrentLM,
    RNNLMConfig,
    TransformerConfig,
    TransformerLM,
    detach_state,
)
from .ngram import NGramLM
from .trainer import TrainConfig, Trainer, TrainResult, evaluate

__all__ = [
    "GRULM", "LSTMLM", "RNNLM", "Block", "CausalSelfAttention", "NGramLM", "RNNLMConfig", "RecurrentLM",
    "TrainConfig", "TrainResult", "Trainer", "TransformerConfig", "TransformerLM", "detach_state", "evaluate",
    "generate", "sample_from_logits",
]
