"""Fictional citizens for the sandbox agencies: deterministic, checksum-valid, Persian.

:func:`generate_citizens` makes the same list for the same ``n`` and ``seed``,
always: it draws only from ``random.Random(seed)`` and measures ages against
the fixed :data:`REFERENCE_DATE`, never the clock. Every citizen has a valid
national code, mobile number and postal code; some are married to each other
and some are their children (with the parents' national codes), which the
civil registration agency needs for birth events.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import jdatetime

from dargah.core.identifiers import is_national_code, is_postal_code, make_national_code
from dargah.sandbox import names
from dargah.sandbox.families import link_families

REFERENCE_DATE = date(2025, 3, 1)
"""The fictional "today" of the data (1403/12/11): ages, expiries and fines are relative to it."""


def jalali(day: date) -> str:
    """A Gregorian date as a Jalali ``YYYY/MM/DD`` string (Latin digits)."""
    return str(jdatetime.date.fromgregorian(date=day).strftime("%Y/%m/%d"))


@dataclass(frozen=True, slots=True)
class Fine:
    """A traffic fine (جریمه رانندگی)."""

    number: str
    amount_rials: int
    date: str
    date_jalali: str
    description: str
    paid: bool
    plate: str | None


@dataclass(frozen=True, slots=True)
class Licence:
    """A driving licence (گواهینامه); ``status`` is valid, suspended, expired or none."""

    status: str
    number: str | None = None
    licence_class: str | None = None
    expires: str | None = None
    expires_jalali: str | None = None


@dataclass(frozen=True, slots=True)
class Citizen:
    """One fictional citizen as the agencies know them."""

    national_code: str
    first_name: str
    last_name: str
    gender: str
    birth_date: str
    birth_date_jalali: str
    father_name: str
    mobile: str
    postal_code: str
    province: str
    city: str
    address: str
    alive: bool = True
    death_date: str | None = None
    death_date_jalali: str | None = None
    taxpayer_status: str = "none"
    tax_file_number: str | None = None
    licence: Licence = field(default_factory=lambda: Licence("none"))
    fines: tuple[Fine, ...] = ()
    vehicles: tuple[str, ...] = ()
    spouse: str | None = None
    father_code: str | None = None
    mother_code: str | None = None
    children: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def age(self, on: date = REFERENCE_DATE) -> int:
        born = date.fromisoformat(self.birth_date)
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class _Unique:
    """Draws values until one not seen before comes up."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def draw(self, make: Callable[[], str]) -> str:
        while True:
            value = make()
            if value not in self.seen:
                self.seen.add(value)
                return value


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _national_code(rng: random.Random, prefixes: tuple[str, ...]) -> str:
    while True:
        code = make_national_code(rng.choice(prefixes) + _digits(rng, 6))
        if is_national_code(code):
            return code


def postal_code(rng: random.Random) -> str:
    """A random well-formed postal code (see ``is_postal_code``)."""
    while True:
        head = "".join(rng.choice("13456789") for _ in range(4))
        code = head + rng.choice("134679") + "".join(rng.choice("013456789") for _ in range(5))
        if is_postal_code(code):
            return code


def _birth_date(rng: random.Random) -> date:
    low, high = rng.choices(((0, 17), (18, 40), (41, 65), (66, 90)), (22, 40, 28, 10))[0]
    return REFERENCE_DATE - timedelta(days=rng.randint(low * 365 + 1, high * 365 + 364))


def _licence(rng: random.Random, alive: bool, uniq: _Unique) -> Licence:
    if rng.random() > 0.7:
        return Licence("none")
    status = rng.choices(("valid", "expired", "suspended"), (80, 12, 8))[0] if alive else "expired"
    offset = -rng.randint(30, 1800) if status == "expired" else rng.randint(30, 3650)
    expires = REFERENCE_DATE + timedelta(days=offset)
    number = uniq.draw(lambda: _digits(rng, 10))
    klass = rng.choices(names.LICENCE_CLASSES, (50, 30, 10, 10))[0]
    return Licence(status, number, klass, expires.isoformat(), jalali(expires))


def _plate(rng: random.Random) -> str:
    letter = rng.choice(names.PLATE_LETTERS)
    return f"{rng.randint(11, 99)} {letter} {rng.randint(111, 999)} ایران {rng.randint(10, 99)}"


def _fines(rng: random.Random, plates: tuple[str, ...], uniq: _Unique) -> tuple[Fine, ...]:
    fines = []
    for _ in range(rng.choices((0, 1, 2, 3, 4), (40, 25, 18, 10, 7))[0]):
        description, amount = rng.choice(names.FINE_DESCRIPTIONS)
        day = REFERENCE_DATE - timedelta(days=rng.randint(1, 1000))
        fines.append(
            Fine(
                number=uniq.draw(lambda: _digits(rng, 12)),
                amount_rials=amount,
                date=day.isoformat(),
                date_jalali=jalali(day),
                description=description,
                paid=rng.random() < 0.6,
                plate=rng.choice(plates) if plates else None,
            )
        )
    return tuple(sorted(fines, key=lambda f: f.date, reverse=True))


def _citizen(rng: random.Random, uniq: dict[str, _Unique]) -> Citizen:
    gender = rng.choice(("male", "female"))
    first_names = names.MALE_FIRST_NAMES if gender == "male" else names.FEMALE_FIRST_NAMES
    province, cities, prefixes = rng.choice(names.PROVINCES)
    city = rng.choice(cities)
    born = _birth_date(rng)
    street, alley = rng.choice(names.STREETS), rng.choice(names.ALLEYS)
    plaque, unit = rng.randint(1, 240), rng.randint(1, 12)
    mobile_prefixes = names.MOBILE_PREFIXES
    citizen = Citizen(
        national_code=uniq["code"].draw(lambda: _national_code(rng, prefixes)),
        first_name=rng.choice(first_names),
        last_name=rng.choice(names.LAST_NAMES),
        gender=gender,
        birth_date=born.isoformat(),
        birth_date_jalali=jalali(born),
        father_name=rng.choice(names.MALE_FIRST_NAMES),
        mobile=uniq["mobile"].draw(lambda: rng.choice(mobile_prefixes) + _digits(rng, 7)),
        postal_code=uniq["postal"].draw(lambda: postal_code(rng)),
        province=province,
        city=city,
        address=f"{province}، {city}، {street}، {alley}، پلاک {plaque}، واحد {unit}",
    )
    age = citizen.age()
    if age >= 40 and rng.random() < 0.08:
        death = born + timedelta(days=rng.randint(40 * 365, age * 365))
        death = min(death, REFERENCE_DATE - timedelta(days=rng.randint(1, 900)))
        citizen = replace(
            citizen, alive=False, death_date=death.isoformat(), death_date_jalali=jalali(death)
        )
    if age < 18:
        return citizen
    return _adult_records(rng, citizen, uniq)


def _adult_records(rng: random.Random, citizen: Citizen, uniq: dict[str, _Unique]) -> Citizen:
    """Tax file, driving licence, vehicles and fines of an adult."""
    status = rng.choices(("active", "inactive", "none"), (45, 15, 40))[0]
    if not citizen.alive and status == "active":
        status = "inactive"
    tax_file = uniq["tax"].draw(lambda: _digits(rng, 10)) if status != "none" else None
    licence = _licence(rng, citizen.alive, uniq["licence"])
    plates: tuple[str, ...] = ()
    if licence.status != "none" and citizen.alive:
        count = rng.choices((0, 1, 2), (45, 45, 10))[0]
        plates = tuple(uniq["plate"].draw(lambda: _plate(rng)) for _ in range(count))
    fines = _fines(rng, plates, uniq["fine"]) if licence.status != "none" else ()
    return replace(
        citizen,
        taxpayer_status=status,
        tax_file_number=tax_file,
        licence=licence,
        vehicles=plates,
        fines=fines,
    )


def generate_citizens(n: int = 1200, seed: int = 1403) -> list[Citizen]:
    """``n`` fictional citizens, the same ones for the same ``n`` and ``seed``."""
    rng = random.Random(seed)
    uniq = {k: _Unique() for k in ("code", "mobile", "postal", "tax", "licence", "plate", "fine")}
    citizens = [_citizen(rng, uniq) for _ in range(n)]
    return link_families(rng, citizens)
