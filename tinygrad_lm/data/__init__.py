"""Data for language models: corpora, tokenizers and batching, plus the DataLoader of ``tinygrad_lm.utils.data``."""
from .batching import BPTTBatcher, LMWindowDataset, lm_windows, sample_windows, split_stream
from .corpora import cache_dir, load_shakespeare, load_text, markdown_play_to_text
from .dataset import DataLoader, Dataset, TensorDataset, default_collate
from .tokenizers import CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer

__all__ = [
    "BPTTBatcher", "CharTokenizer", "DataLoader", "Dataset", "LMWindowDataset", "TensorDataset", "Tokenizer",
    "WordTokenizer", "cache_dir", "default_collate", "lm_windows", "load_shakespeare", "load_text",
    "load_tokenizer", "markdown_play_to_text", "sample_windows", "split_stream",
]
