"""Build stalwart/guard/person_names.txt: given names and family names, lower-cased and
accent-folded, from the person providers of every Faker locale (83 locales: Latin-script names as
they are, the romanized lists of Chinese, Japanese and Korean, and Cyrillic and Greek names
transliterated). The guard uses the table as one piece of evidence among several (a capitalized
word that is a known given name, followed by another capitalized word), never alone.

    pip install 'Faker>=30,<40'   # the `train` extra
    python scripts/build_name_table.py

Reproducible: the output depends only on the Faker version, which the file's header records.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "stalwart" / "guard" / "person_names.txt"

_CYR = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ",
        [
            "a",
            "b",
            "v",
            "g",
            "d",
            "e",
            "e",
            "zh",
            "z",
            "i",
            "y",
            "k",
            "l",
            "m",
            "n",
            "o",
            "p",
            "r",
            "s",
            "t",
            "u",
            "f",
            "kh",
            "ts",
            "ch",
            "sh",
            "shch",
            "_",
            "y",
            "_",
            "e",
            "yu",
            "ya",
            "i",
            "yi",
            "ye",
            "g",
        ],
        strict=True,
    )
)
_GRK = dict(
    zip(
        "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰ",
        [
            "a",
            "v",
            "g",
            "d",
            "e",
            "z",
            "i",
            "th",
            "i",
            "k",
            "l",
            "m",
            "n",
            "x",
            "o",
            "p",
            "r",
            "s",
            "s",
            "t",
            "y",
            "f",
            "ch",
            "ps",
            "o",
            "a",
            "e",
            "i",
            "i",
            "o",
            "y",
            "o",
            "i",
            "y",
            "i",
            "y",
        ],
        strict=True,
    )
)


def fold(name: str) -> str:
    """Lower-case ASCII form: accents dropped, Cyrillic and Greek transliterated."""
    low = name.lower()
    out = []
    for ch in low:
        t = _CYR.get(ch) or _GRK.get(ch)
        out.append("" if t == "_" else t if t else ch)
    s = unicodedata.normalize("NFKD", "".join(out))
    return "".join(c for c in s if not unicodedata.combining(c))


_OK = re.compile(r"^[a-z][a-z'\-]{1,24}$")

GIVEN = ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary",
         "first_romanized_names", "first_names_male_romanized", "first_names_female_romanized")  # fmt: skip
FAMILY = ("last_names", "last_names_male", "last_names_female", "last_romanized_names",
          "last_names_romanized")  # fmt: skip


def collect() -> tuple[set[str], set[str]]:
    from faker.providers import person

    given: set[str] = set()
    family: set[str] = set()
    for mod in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"faker.providers.person.{mod.name}").Provider
        for attrs, bucket in ((GIVEN, given), (FAMILY, family)):
            for attr in attrs:
                values = getattr(provider, attr, None) or ()
                if not isinstance(values, dict | list | tuple | set | frozenset):
                    continue
                for v in values.keys() if isinstance(values, dict) else values:
                    for part in re.split(r"[\s]+", str(v)):
                        f = fold(part.strip(".,"))
                        if _OK.match(f):
                            bucket.add(f)
    return given, family


def main() -> None:
    import faker

    given, family = collect()
    lines = [f"# person name table built by scripts/build_name_table.py from Faker {faker.VERSION}",
             "# g = given name, f = family name, gf = both"]  # fmt: skip
    for name in sorted(given | family):
        lines.append(f"{name}\t{'g' if name in given else ''}{'f' if name in family else ''}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(given)} given names, {len(family)} family names")


if __name__ == "__main__":
    main()
