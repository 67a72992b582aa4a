#!/usr/bin/env python3
"""Makes golden.json: all-MiniLM-L6-v2 embeddings of SENTENCES from the numpy reference
(the sentence-transformers recipe: BERT, mean pooling over the attention mask, L2
normalisation, truncation to 256 tokens), rounded to 6 decimals.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy safetensors tokenizers
    /tmp/ref/bin/python make.py "$MARKETS_MODEL_DIR" /work/shared/tools/minilm_reference.py

The reference reproduces the cosine published for the model (0.7553 for the first pair)."""
import importlib.util
import json
import pathlib
import sys

LONG = (
    "The committee will meet on Tuesday to review the quarterly figures, discuss the budget "
    "for the coming year, hear the report of the auditors and vote on the proposals submitted "
    "by the members before the deadline. "
) * 12  # about 500 tokens: cut at 256

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Will it rain in Paris tomorrow?",
    "Paris precipitation forecast",
    "Bitcoin above $100k by the end of the year",
    "Who wins the Super Bowl?",
    "Will the Fed cut interest rates in June?",
    "Élection présidentielle 2027 : qui au second tour ?",
    "東京の明日の天気は晴れですか",
    "Ünïcödé ëvërÿwhërë, naïve café",
    "emoji 🚀🌕 to the moon!!!",
    "42",
    "3.14159 2.71828 1.41421",
    "!!! ??? ... ;;; ---",
    "a",
    "",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING ABOUT ELECTIONS",
    "river bank erosion after the flood",
    "the bank raised its interest rates",
    "GDP growth exceeds 3% in Q3 2026",
    "Will SpaceX land humans on Mars before 2030?",
    "Premier League: Arsenal vs. Chelsea, final score over 2.5 goals",
    "tab\tseparated\tvalues and\nnew lines",
    "don't won't can't shouldn't",
    "e-mail: someone@example.com, url: https://example.com/path?q=1",
    "The quick brown fox jumps over the lazy dog.",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "Will the price of crude oil exceed $120 per barrel by December 31st?",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    LONG,
    "short " * 300,
]


def reference(path):
    spec = importlib.util.spec_from_file_location("minilm_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(model_dir, reference_path):
    model = reference(reference_path).MiniLM(model_dir)
    golden = [
        {"text": text, "embedding": [round(float(x), 6) for x in model.embed(text)]}
        for text in SENTENCES
    ]
    out = pathlib.Path(__file__).with_name("golden.json")
    out.write_text(json.dumps(golden, ensure_ascii=False) + "\n", encoding="utf-8")
    a, b = (g["embedding"] for g in golden[:2])
    print(f"{len(golden)} sentences; cosine of the first pair {sum(x * y for x, y in zip(a, b)):.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/work/shared/tools/minilm_reference.py")
