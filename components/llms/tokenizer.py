"""Tokenizers for the language decoder: the shipped tiny BPE tokenizer, and the special tokens every
tokenizer gets (``<image>`` placeholder and ``<SEG>``), with the check that ``<SEG>`` stays one id.

LISA's issue 55: a tokenizer that splits a new token into two ids (a leading-space id + the token)
silently doubled every mask. ``add_gella_tokens`` adds both tokens as *special* tokens and
``check_single_token`` refuses a tokenizer that still splits them, so that bug cannot come back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esgkit.core.errors import CompatibilityError

SEG_TOKEN = "<SEG>"
IMAGE_TOKEN = "<image>"
TINY_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny_tokenizer"
TINY_VOCAB_SIZE = 1024

# ShapesWorld-style vocabulary (things, stuff, colours, sizes, textures, relations, numbers, plurals)
# plus the words of the paper's prompts, so that captions and prompts tokenize into few ids.
_THINGS = (
    "circle square triangle star ring rectangle diamond cross ellipse hexagon pentagon heart moon line stripe shape "
    "object entity"
).split()
_STUFF = "sky grass water sand wall fence road floor ground snow field sea river cloud tree bush mountain background".split()
_COLOURS = "red green blue yellow orange purple pink white black gray grey brown cyan magenta dark light".split()
_ADJECTIVES = (
    "small large big tiny huge medium thin thick striped dotted plain checkered solid hollow bright pale tall short "
    "long round"
).split()
_RELATIONS = [
    "left of", "right of", "above", "below", "next to", "near", "on top of", "under", "behind",
    "in front of", "inside", "beside", "between", "over", "across", "along", "at the top", "at the bottom",
]
_NUMBERS = "one two three four five six seven eight nine ten several many some both few no".split()
_FUNCTION = "a an the of and with is are there in on at to this that these those it its image picture scene shows".split()
_PROMPT_WORDS = (
    "Please help me extract semantic nouns of this sentence: each semantic noun from the sentence. "
    "The sentence is describe the image briefly. USER: ASSISTANT: It"
)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "sh", "ch")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def tiny_corpus() -> list[str]:
    """The deterministic in-code corpus the tiny BPE tokenizer is trained on."""
    nouns = _THINGS + _STUFF
    lines = [_PROMPT_WORDS, _PROMPT_WORDS.lower()]
    for i, noun in enumerate(nouns):
        colour = _COLOURS[i % len(_COLOURS)]
        adjective = _ADJECTIVES[i % len(_ADJECTIVES)]
        relation = _RELATIONS[i % len(_RELATIONS)]
        other = nouns[(i * 7 + 3) % len(nouns)]
        number = _NUMBERS[i % len(_NUMBERS)]
        lines += [
            f"a {colour} {noun} {relation} the {other}.",
            f"{number} {adjective} {_plural(noun)} {relation} {_plural(other)}, and the {noun}.",
            f"There are {_plural(noun)} and {colour} {_plural(other)} in the image.",
            f"{noun.capitalize()} {SEG_TOKEN}, {colour} {noun} {SEG_TOKEN}, {_plural(noun)} {SEG_TOKEN}.",
        ]
    lines += [" ".join(_COLOURS), " ".join(_ADJECTIVES), " ".join(_RELATIONS), " ".join(_NUMBERS), " ".join(_FUNCTION)]
    lines += [w.capitalize() for w in _FUNCTION + _NUMBERS + nouns + _COLOURS]
    return lines * 3


def build_tiny_tokenizer_file(vocab_size: int = TINY_VOCAB_SIZE) -> Any:
    """Train the tiny byte-level BPE (``tokenizers``) on ``tiny_corpus()``; returns a
    ``tokenizers.Tokenizer``. Byte-level, so any text encodes (no unknown token); < 0.1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # <SEG> is not in the trained vocabulary: it is added like for any other tokenizer.
    corpus = [line.replace(SEG_TOKEN, "") for line in tiny_corpus()]
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def write_tiny_tokenizer(directory: Path = TINY_TOKENIZER_DIR) -> Path:
    """(Re)write the shipped tokenizer asset. ``python -m esgkit.components.llms.tokenizer``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    build_tiny_tokenizer_file().save(str(path))
    return path


def load_tiny_tokenizer() -> Any:
    """The tiny tokenizer as a transformers fast tokenizer, with ``<image>`` and ``<SEG>`` added.

    Reads the shipped ``assets/tiny_tokenizer/tokenizer.json``; when a (non-editable) install lacks
    it, trains the same tokenizer in memory (deterministic, < 0.1 s)."""
    from transformers import PreTrainedTokenizerFast

    path = TINY_TOKENIZER_DIR / "tokenizer.json"
    kwargs: dict[str, Any] = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    if path.is_file():
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), **kwargs)
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_tiny_tokenizer_file(), **kwargs)
    add_gella_tokens(tokenizer)
    return tokenizer


def add_gella_tokens(tokenizer: Any) -> tuple[int, int]:
    """Add ``<image>`` and ``<SEG>`` as special tokens (a no-op when present) and check that each
    encodes to exactly one id. Returns (image_token_id, seg_token_id)."""
    from tokenizers import AddedToken

    missing = [t for t in (IMAGE_TOKEN, SEG_TOKEN) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(
            [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in missing],
            special_tokens=True,
        )
    return check_single_token(tokenizer, IMAGE_TOKEN), check_single_token(tokenizer, SEG_TOKEN)


def check_single_token(tokenizer: Any, token: str = SEG_TOKEN) -> int:
    """The one id of ``token``; raise CompatibilityError when the tokenizer splits it.

    Checked alone, after a word, after a space and between words, the contexts an answer puts it in."""
    ids = None
    for text in (token, f"circle{token}", f"circle {token}", f"a {token}, b"):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        hits = [i for i in encoded if tokenizer.convert_ids_to_tokens(i) == token]
        if len(hits) != 1 or (text == token and len(encoded) != 1):
            pieces = tokenizer.convert_ids_to_tokens(encoded)
            raise CompatibilityError(
                f"the tokenizer splits {token!r} in {text!r} into {pieces}; it must encode to exactly one "
                f"id (add it as a special token: add_gella_tokens(tokenizer)), or every <SEG> embedding "
                "would be read at the wrong place"
            )
        ids = hits[0]
    assert ids is not None
    return int(ids)


__all__ = [
    "IMAGE_TOKEN", "SEG_TOKEN", "TINY_TOKENIZER_DIR", "TINY_VOCAB_SIZE", "add_gella_tokens", "build_tiny_tokenizer_file",
    "check_single_token", "load_tiny_tokenizer", "tiny_corpus", "write_tiny_tokenizer",
]


if __name__ == "__main__":
    print(write_tiny_tokenizer())
