#!/usr/bin/env python3
# Writes model/tokenizer/unicode_tables.inc: the code point classes the Falcon pre-tokenizer needs,
# as sorted ranges, from this Python's Unicode database plus the corrections listed below.
"""Generate the tokenizer's Unicode class table.

Classes mirror what Hugging Face tokenizers (0.22, as shipped by @anush008/tokenizers 0.6) asks of
each code point:
  letter / number  Oniguruma \\p{L} / \\p{N} in the ByteLevel (GPT-2) regex
  space            Oniguruma \\s, which is the White_Space property
  punct (flag)     Rust char::is_ascii_punctuation() || unicode_categories' is_punctuation()
                   (general categories Pc Pd Pe Pf Pi Po Ps)

The two libraries sit on different Unicode versions: the Oniguruma bundled by onig_sys knows
Unicode 16.0, while the unicode_categories crate still carries Unicode 8.0 tables. The base comes
from unicodedata (14.0.0 on Python 3.11) and the *_16 / *_8 lists below bring it to those versions;
they were derived by comparing every code point with the real library
(tools/tokenizer_fixtures/check_unicode.mjs writes its classes; pass that file with --check).

Usage: python3 tools/gen_unicode_tables.py [--check hf_classes.bin] [output path]
"""
import os
import string
import sys
import unicodedata

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
PUNCT = 4

# White_Space is not exposed by unicodedata (str.isspace() differs: it includes U+001C..U+001F).
WHITE_SPACE = set(range(0x09, 0x0E)) | {0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F,
                                         0x3000} | set(range(0x2000, 0x200B))
ASCII_PUNCT = {ord(c) for c in string.punctuation}
PUNCT_CATEGORIES = {"Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps"}

# Letters and numbers assigned in Unicode 15.0 to 16.0 (unassigned in 14.0).
LETTERS_16 = [
    (0x1C89, 0x1C8A), (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3), (0x10D4A, 0x10D65),
    (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x1123F, 0x11240), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
    (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11BC0, 0x11BE0), (0x11F02, 0x11F02),
    (0x11F04, 0x11F10), (0x11F12, 0x11F33), (0x1342F, 0x1342F), (0x13441, 0x13446),
    (0x13460, 0x143FA), (0x16100, 0x1611D), (0x16D40, 0x16D6C), (0x18CFF, 0x18CFF),
    (0x1B132, 0x1B132), (0x1B155, 0x1B155), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D),
    (0x1E4D0, 0x1E4EB), (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5F0), (0x2B739, 0x2B739),
    (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF),
]
NUMBERS_16 = [
    (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x11F50, 0x11F59),
    (0x16130, 0x16139), (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1D2C0, 0x1D2D3),
    (0x1E4F0, 0x1E4F9), (0x1E5F1, 0x1E5FA),
]
# Punctuation in Unicode 14.0 that Unicode 8.0 did not have (or classed otherwise).
NOT_PUNCT_8 = [
    (0x061D, 0x061D), (0x09FD, 0x09FD), (0x0A76, 0x0A76), (0x0C77, 0x0C77), (0x0C84, 0x0C84),
    (0x1B7D, 0x1B7E), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59),
    (0x10F86, 0x10F89), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D),
    (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1183B, 0x1183B), (0x11944, 0x11946),
    (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2),
    (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF),
    (0x12FF1, 0x12FF2), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2), (0x1E95E, 0x1E95F),
]
# Punctuation (Po) in Unicode 8.0 that later versions moved to So / Mn.
PUNCT_8 = [(0x166D, 0x166D), (0x111C9, 0x111C9)]


def expand(ranges):
  return {cp for first, last in ranges for cp in range(first, last + 1)}


LETTERS_16_SET = expand(LETTERS_16)
NUMBERS_16_SET = expand(NUMBERS_16)
NOT_PUNCT_8_SET = expand(NOT_PUNCT_8)
PUNCT_8_SET = expand(PUNCT_8)


def classify(cp):
  if cp in WHITE_SPACE:
    return SPACE
  cat = unicodedata.category(chr(cp))
  cls = OTHER
  if cat[0] == "L" or cp in LETTERS_16_SET:
    cls = LETTER
  elif cat[0] == "N" or cp in NUMBERS_16_SET:
    cls = NUMBER
  punct = cp in ASCII_PUNCT or (cat in PUNCT_CATEGORIES and cp not in NOT_PUNCT_8_SET)
  if punct or cp in PUNCT_8_SET:
    cls |= PUNCT
  return cls


def ranges():
  out = []
  start, current = 0, classify(0)
  for cp in range(1, 0x110000):
    cls = classify(cp)
    if cls != current:
      out.append((start, cp - 1, current))
      start, current = cp, cls
  out.append((start, 0x10FFFF, current))
  return [r for r in out if r[2] != OTHER]


def check(path):
  """Compares with the classes check_unicode.mjs read from Hugging Face tokenizers."""
  hf = open(path, "rb").read()
  bad = [cp for cp in range(0x110000)
         if not 0xD800 <= cp <= 0xDFFF and classify(cp) != hf[cp]]
  for cp in bad[:20]:
    print("U+%04X: ours %d, tokenizers %d" % (cp, classify(cp), hf[cp]))
  print("%d code points differ from %s" % (len(bad), path))
  return not bad


def main():
  args = sys.argv[1:]
  if len(args) >= 2 and args[0] == "--check":
    sys.exit(0 if check(args[1]) else 1)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = args[0] if args else os.path.join(root, "model/tokenizer/unicode_tables.inc")
  rows = ranges()
  with open(path, "w", encoding="ascii") as f:
    f.write("// Code point classes for the pre-tokenizer as {first, last, class} ranges: Unicode %s\n"
            % unicodedata.unidata_version)
    f.write("// brought to 16.0 for letters/numbers and 8.0 for punctuation, as tokenizers has them.\n")
    f.write("// Generated by tools/gen_unicode_tables.py; do not edit. Unlisted code points are other.\n")
    f.write("// class: 0 other, 1 letter, 2 number, 3 space; +4 punctuation.\n")
    for i in range(0, len(rows), 4):
      f.write(" ".join("{0x%06X, 0x%06X, %d}," % r for r in rows[i:i + 4]) + "\n")
  print("%s: %d ranges, Unicode %s" % (path, len(rows), unicodedata.unidata_version))


if __name__ == "__main__":
  main()
