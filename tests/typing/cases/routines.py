"""Routines the typing cases wire together (checked with the plugin, or via a stub)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import msgspec

from routilux import Append, Batch, Emit, Latest, Outputs, Reduce, State, routine


class Doc(msgspec.Struct):
    title: str


class Animal:
    name = "animal"


class Dog(Animal):
    name = "dog"


@routine
def fetch(url: str) -> bytes:
    return url.encode()


@routine(concurrency=2)
def parse(raw: bytes, encoding: str = "utf-8") -> Doc:
    return Doc(raw.decode(encoding))


@routine(name="lookup", timeout=5.0)
def find(key: str) -> Doc | None:
    return Doc(key) if key else None


class Checked(Outputs):
    ok: Emit[Doc]
    rejected: Emit[str]


@routine
def check(doc: Doc, out: Checked) -> None:
    if doc.title:
        out.ok(doc)
    else:
        out.rejected("no title")


@routine
def words(doc: Doc) -> Iterator[str]:
    yield from doc.title.split()


@routine
async def count(text: str) -> int:
    return len(text)


@routine
async def chars(text: str) -> AsyncIterator[str]:
    for ch in text:
        yield ch


@routine
def total(values: Append[int]) -> int:
    return sum(values)


@routine
def batches(values: Annotated[Append[str], Batch(10)]) -> list[str]:
    return list(values)


@routine
def scale(value: int, factor: Latest[float]) -> float:
    return value * factor


@routine
def longest(title: Annotated[str, Reduce(max)]) -> str:
    return title


@routine
def adopt(pet: Animal) -> Dog:
    return Dog()


@routine
def show(text: str) -> None:
    print(text)


@routine
def shelter(name: str) -> Animal:
    return Dog() if name == "rex" else Animal()


@routine
def walk(dog: Dog) -> str:
    return dog.name


class Tally(State):
    seen: int = 0


@routine
def tally(x: int, memo: Tally) -> int:
    memo.seen += 1
    return memo.seen
