"""Write semcache/data/languages.json.gz: the commonest words of six Latin-script languages, with frequencies.

    pip install --target /tmp/wordfreq wordfreq && PYTHONPATH=/tmp/wordfreq .venv/bin/python -m benchmarks.make_language_profiles

``semcache.matching.language`` reads it to tell English prompts from Spanish, French, German,
Portuguese and Italian ones (the packaged model reads only English). The frequencies come from
the PyPI package ``wordfreq`` (Zipf scale: log10 of occurrences per billion words, from
Wikipedia, subtitles, news, books, web text and social media), which is needed only to
rebuild this file, never at run time. Only the ``--top`` commonest words of each language are
kept, rounded to 0.1, so the file stays small (about 0.4 MB).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "es", "fr", "de", "pt", "it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=12000)
    parser.add_argument("--out", type=Path, default=ROOT / "semcache" / "data" / "languages.json.gz")
    args = parser.parse_args(argv)
    import wordfreq

    profiles = {}
    for lang in LANGUAGES:
        words = [w for w in wordfreq.top_n_list(lang, args.top) if w.isalpha()]
        profiles[lang] = {w: round(wordfreq.zipf_frequency(w, lang), 1) for w in words}
    data = {"source": f"wordfreq {wordfreq.__version__ if hasattr(wordfreq, '__version__') else ''}".strip(),
            "scale": "zipf", "top": args.top, "languages": profiles}
    args.out.write_bytes(gzip.compress(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): " + ", ".join(f"{k} {len(v)}" for k, v in profiles.items()))


if __name__ == "__main__":
    main()
