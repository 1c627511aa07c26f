"""A back office's reference data file (CSV or JSON) -> checked snapshot lines.

CSV: UTF-8 (a BOM is fine), comma-separated, a header naming exactly the columns `barcode`,
`description`, `price`, `tax_code` (any order); prices are integers in minor units. JSON: an
object `{"articles": [{barcode, description, price, tax_code}, ...], "discounts": [{id,
rule}, ...]}`; discounts can only come in JSON. Every problem is reported, up to
MAX_PROBLEMS, as `FILE:LINE: column COLUMN: problem` or `FILE: articles[3].price: problem`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import msgspec

from edged.errors import EdgedError
from edged.refwire import Article, Discount, Line, article_key

MAX_PROBLEMS = 20
COLUMNS = ("barcode", "description", "price", "tax_code")


class RefdataSourceError(EdgedError):
    """The file cannot be published; `problems` says where and what, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = "" if len(problems) < MAX_PROBLEMS else f"\n(stopped after {MAX_PROBLEMS})"
        super().__init__("\n".join(problems) + more)


def read_source(path: Path) -> list[Line]:
    """The file's articles (and discounts) in order; RefdataSourceError listing problems."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RefdataSourceError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RefdataSourceError([f"{path}: not UTF-8 at byte {exc.start}"]) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _from_json(path, text)
    return _from_csv(path, text)


def _problem_text(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(key, problem) of a msgspec error such as "Expected `int`, got `str` - at `$.price`"."""
    message, _, at = str(exc).rpartition(" - at `$")
    if not message:
        return "", str(exc).replace("`", "")
    return at.rstrip("`").lstrip("."), message.replace("`", "")


def _from_csv(path: Path, text: str) -> list[Line]:
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    try:
        header = next(reader)
    except StopIteration:
        raise RefdataSourceError([f"{path}:1: empty file; expected the header line"]) from None
    header = [h.strip() for h in header]
    if sorted(header) != sorted(COLUMNS):
        raise RefdataSourceError(
            [
                f"{path}:1: the header is {','.join(header)!r}; it must name the columns "
                f"{','.join(COLUMNS)} (any order), and no others"
            ]
        )
    lines: list[Line] = []
    articles = _Articles(lines, problems)
    for row in reader:
        number = reader.line_num
        if not row or row == [""]:
            continue
        where = f"{path}:{number}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields, the header has {len(header)}")
        else:
            item: dict[str, Any] = dict(zip(header, row, strict=True))
            price = item["price"].strip()
            if not price.isdigit():
                problems.append(
                    f"{where}: column price: must be an integer in minor units (199 for 1.99), "
                    f"got {price[:20]!r}"
                )
            else:
                item["price"] = int(price)
                articles.add(item, where, "column ", f"line {number}")
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RefdataSourceError(problems)
    return lines


class _Articles:
    """Articles read so far, checked one by one; problems collected, duplicates found."""

    def __init__(self, lines: list[Line], problems: list[str]) -> None:
        self.lines = lines
        self.problems = problems
        self._seen: dict[str, str] = {}  # GTIN key -> where it was first

    def add(self, item: dict[str, Any], where: str, prefix: str, origin: str) -> None:
        try:
            article = msgspec.convert(item, Article)
        except msgspec.ValidationError as exc:
            key, problem = _problem_text(exc)
            self.problems.append(f"{where}: {prefix}{key}: {problem[0].lower()}{problem[1:]}")
            return
        key = article_key(article.barcode)
        if key in self._seen:
            self.problems.append(
                f"{where}: {prefix}barcode: {article.barcode!r} is the same article as "
                f"{self._seen[key]} (GTIN {key})"
            )
            return
        self._seen[key] = origin
        self.lines.append(article)


def _from_json(path: Path, text: str) -> list[Line]:
    try:
        doc = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise RefdataSourceError([f"{path}: not valid JSON: {exc}"]) from None
    if not isinstance(doc, dict) or set(doc) - {"articles", "discounts"}:
        raise RefdataSourceError(
            [f'{path}: must be an object {{"articles": [...], "discounts": [...]}}, no other keys']
        )
    items, discounts = doc.get("articles", []), doc.get("discounts", [])
    problems: list[str] = []
    lines: list[Line] = []
    for name, value in (("articles", items), ("discounts", discounts)):
        if not isinstance(value, list):
            problems.append(f"{path}: {name}: must be an array")
    if problems:
        raise RefdataSourceError(problems)
    articles = _Articles(lines, problems)
    for i, item in enumerate(items):
        where = f"{path}: articles[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with {', '.join(COLUMNS)}")
        else:
            articles.add(item, where, "", f"articles[{i}]")
        if len(problems) >= MAX_PROBLEMS:
            raise RefdataSourceError(problems)
    ids: set[str] = set()
    for i, item in enumerate(discounts):
        where = f"{path}: discounts[{i}]"
        try:
            discount = msgspec.convert(item, Discount)
        except msgspec.ValidationError as exc:
            key, problem = _problem_text(exc)
            problems.append(f"{where}.{key}: {problem[0].lower()}{problem[1:]}")
            continue
        float_at = _first_float(discount.rule, "rule")
        if float_at is not None:
            problems.append(
                f"{where}.{float_at}: a number with a fraction; money and quantities are "
                "integers (minor units, or a decimal string)"
            )
        elif discount.id in ids:
            problems.append(f"{where}.id: {discount.id!r} appears twice")
        else:
            ids.add(discount.id)
            lines.append(discount)
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RefdataSourceError(problems)
    return lines


def _first_float(value: Any, path: str) -> str | None:
    if isinstance(value, float):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := _first_float(item, f"{path}.{key}")) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _first_float(item, f"{path}[{i}]")) is not None:
                return found
    return None
