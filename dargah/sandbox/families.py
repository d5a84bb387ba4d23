"""Family ties among generated citizens: married couples and their children.

A couple shares the husband's address; a wife keeps her own family name, as
in Iran. A child takes the father's family name and first name (as father's
name), records both parents' national codes, and lives with them while under
25 and unmarried. Parents are 18 to 45 (mother) and 20 to 55 (father) years
older than their children.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dargah.sandbox.citizens import Citizen

MARRIED_SHARE = 0.7
CHILD_SHARE = 0.65
MAX_CHILDREN = 5


def _marry(rng: random.Random, people: list[Citizen]) -> list[tuple[int, int]]:
    ages = [c.age() for c in people]
    women_by_age: dict[int, list[int]] = {}
    for i, c in enumerate(people):
        if c.gender == "female" and 20 <= ages[i] <= 85:
            women_by_age.setdefault(ages[i], []).append(i)
    couples: list[tuple[int, int]] = []
    for h, husband in enumerate(people):
        if husband.gender != "male" or not 22 <= ages[h] <= 88 or rng.random() > MARRIED_SHARE:
            continue
        for gap in rng.sample(range(-3, 11), 14):
            brides = women_by_age.get(ages[h] - gap)
            if brides:
                w = brides.pop(rng.randrange(len(brides)))
                couples.append((h, w))
                break
    for h, w in couples:
        husband = people[h]
        people[h] = replace(husband, spouse=people[w].national_code)
        people[w] = replace(
            people[w],
            spouse=husband.national_code,
            postal_code=husband.postal_code,
            province=husband.province,
            city=husband.city,
            address=husband.address,
        )
    return couples


def _adopt(people: list[Citizen], child: int, couple: tuple[int, int]) -> None:
    father, mother = people[couple[0]], people[couple[1]]
    kid = replace(
        people[child],
        last_name=father.last_name,
        father_name=father.first_name,
        father_code=father.national_code,
        mother_code=mother.national_code,
    )
    if kid.age() < 25 and kid.spouse is None:
        kid = replace(
            kid,
            postal_code=father.postal_code,
            province=father.province,
            city=father.city,
            address=father.address,
        )
    people[child] = kid
    for parent in couple:
        p = people[parent]
        people[parent] = replace(p, children=(*p.children, kid.national_code))


def link_families(rng: random.Random, citizens: list[Citizen]) -> list[Citizen]:
    """The citizens with spouses, parents and children filled in (a new list)."""
    people = list(citizens)
    couples = _marry(rng, people)
    by_mother_age: dict[int, list[tuple[int, int]]] = {}
    for couple in couples:
        by_mother_age.setdefault(people[couple[1]].age(), []).append(couple)
    # Oldest first, so that parents have their final family name before their children.
    for i in sorted(range(len(people)), key=lambda k: -people[k].age()):
        child, age = people[i], people[i].age()
        if age > 60 or rng.random() > CHILD_SHARE:
            continue
        candidates = [
            couple
            for mother_age in range(age + 18, age + 46)
            for couple in by_mother_age.get(mother_age, ())
            if 20 <= people[couple[0]].age() - age <= 55
            and len(people[couple[0]].children) < MAX_CHILDREN
            and i not in couple
            and (child.spouse is None or child.spouse not in people[couple[0]].children)
        ]
        if child.spouse is not None:  # never make a couple of siblings
            spouse = next(p for p in people if p.national_code == child.spouse)
            candidates = [c for c in candidates if people[c[0]].national_code != spouse.father_code]
        if candidates:
            _adopt(people, i, rng.choice(candidates))
    return people
