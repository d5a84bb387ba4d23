"""Identifiers (protocol §1) hold their rules for any input: properties checked with hypothesis.

The check-digit rules are restated here from their definitions, independently of the code
under test, so that the two are compared rather than the code with itself.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dargah.core.errors import BadRequest
from dargah.core.identifiers import (
    MEMBER_CLASSES,
    InvalidIdentifier,
    is_legal_id,
    is_national_code,
    is_postal_code,
    is_public_service_id,
    make_legal_id,
    make_national_code,
    parse_member_id,
    parse_service_id,
    parse_subsystem_id,
    parse_topic_id,
)

PARSERS = (parse_member_id, parse_subsystem_id, parse_service_id, parse_topic_id)
PREDICATES = (is_national_code, is_legal_id, is_postal_code, is_public_service_id)

# -- reference definitions --------------------------------------------------------


def national_residue(code: str) -> int:
    return sum(int(code[i]) * (10 - i) for i in range(9)) % 11


def reference_national_code(code: str) -> bool:
    """کد ملی: 10 ASCII digits, not all equal, check digit r if r < 2 else 11 - r."""
    if len(code) != 10 or not all(c in "0123456789" for c in code) or len(set(code)) == 1:
        return False
    r = national_residue(code)
    return int(code[9]) == (r if r < 2 else 11 - r)


LEGAL_WEIGHTS = (29, 27, 23, 19, 17, 29, 27, 23, 19, 17)


def legal_residue(legal_id: str) -> int:
    offset = int(legal_id[9]) + 2
    return sum((offset + int(legal_id[i])) * LEGAL_WEIGHTS[i] for i in range(10)) % 11


def reference_legal_id(legal_id: str) -> bool:
    """شناسه ملی: 11 ASCII digits, digits 4-9 not all zero, check digit r (0 when r is 10)."""
    if len(legal_id) != 11 or not all(c in "0123456789" for c in legal_id):
        return False
    if legal_id[3:9] == "000000":
        return False
    r = legal_residue(legal_id)
    return int(legal_id[10]) == (0 if r == 10 else r)


# -- strategies ---------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9).filter(
    lambda s: len(set(s)) > 1
)
ten_digits = st.text(alphabet="0123456789", min_size=10, max_size=10)
legal_first10 = ten_digits.filter(lambda s: s[3:9] != "000000")
instances = st.from_regex(r"[A-Z]{2,8}", fullmatch=True)
classes = st.sampled_from(MEMBER_CLASSES)
legal_ids = legal_first10.map(make_legal_id)
subsystem_codes = st.from_regex(r"[a-z][a-z0-9-]{1,39}", fullmatch=True)
service_codes = st.from_regex(r"[a-z][a-z0-9-]{0,40}(\.v[0-9]{1,5})?", fullmatch=True)

member_ids = st.builds(lambda i, c, legal: f"{i}/{c}/{legal}", instances, classes, legal_ids)
subsystem_ids = st.builds(lambda m, code: f"{m}/{code}", member_ids, subsystem_codes)
service_ids = st.builds(lambda s, code: f"{s}/{code}", subsystem_ids, service_codes)

# Text that is close to an identifier: made of the characters identifiers are made of,
# plus a few that are not (unicode digits and letters, dots, spaces, controls).
near_alphabet = st.sampled_from(
    [
        *"/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz-._ \t\n",
        "GOV",
        "PUB",
        "COM",
        "NGO",
        "IR",
        "TEST",
        "/",
        "//",
        ".v1",
        "۱",
        "٣",
        "𝟙",
        "İ",
        "ß",
        "\x00",
        "\u200c",
    ]
)
near_text = st.lists(near_alphabet, max_size=40).map("".join)


@st.composite
def mutated_service_ids(draw: st.DrawFn) -> str:
    """A valid service id with one part replaced, dropped, doubled or perturbed."""
    sid = draw(service_ids)
    parts = sid.split("/")
    i = draw(st.integers(0, len(parts) - 1))
    how = draw(st.sampled_from(["replace", "drop", "double", "insert", "case", "trailing"]))
    if how == "replace":
        parts[i] = draw(st.one_of(st.text(max_size=12), near_text))
    elif how == "drop":
        del parts[i]
    elif how == "double":
        parts.insert(i, parts[i])
    elif how == "insert":
        pos = draw(st.integers(0, len(parts[i])))
        parts[i] = parts[i][:pos] + draw(st.text(min_size=1, max_size=3)) + parts[i][pos:]
    elif how == "case":
        parts[i] = parts[i].swapcase()
    else:
        parts[-1] += draw(st.sampled_from(["/", "/x", ".", ".v", " ", "\n"]))
    return "/".join(parts)


any_text = st.one_of(st.text(), near_text, mutated_service_ids())


# -- parsers -------------------------------------------------------------------------


@settings(max_examples=400)
@given(raw=any_text)
@example(raw="")
@example(raw="/")
@example(raw="////")
@example(raw="TEST/GOV/10100387143/prov/echo.v1/extra")
@example(raw="TEST/GOV/۱۰۱۰۰۳۸۷۱۴۳/prov/echo.v1")
@example(raw="TEST/GOV/00000000000/prov/echo.v1")
@example(raw="TEST/GOV/10100387143/prov/" + "a" * 65)
def test_identifier_parsers_raise_only_invalid_identifier_for_any_text(raw: str) -> None:
    for parse in PARSERS:
        try:
            parsed = parse(raw)
        except InvalidIdentifier as exc:
            assert isinstance(exc, BadRequest) and exc.code == "bad-request"
            assert str(exc)
        else:
            # anything accepted is canonical: printing it gives back exactly the input
            assert str(parsed) == raw


@given(raw=st.one_of(st.text(), near_text, ten_digits, ten_digits.map(lambda s: s + "0")))
@example(raw="۰۴۹۹۳۷۰۸۹۹")  # Persian digits are not ASCII digits
@example(raw="0499370899\n")
@example(raw="1111111111")
def test_identifier_predicates_never_raise_and_always_return_a_bool(raw: str) -> None:
    for predicate in PREDICATES:
        assert type(predicate(raw)) is bool
    assert is_national_code(raw) == reference_national_code(raw)
    assert is_legal_id(raw) == reference_legal_id(raw)


# -- national codes (کد ملی) -------------------------------------------------------


@given(first9=nine_digits)
def test_a_made_national_code_always_validates(first9: str) -> None:
    code = make_national_code(first9)
    assert len(code) == 10 and code.startswith(first9)
    assert is_national_code(code)


@given(first9=nine_digits, position=st.integers(0, 9), digit=digits)
def test_changing_one_digit_of_a_national_code_invalidates_it_except_for_the_check_digit_alias(
    first9: str, position: int, digit: str
) -> None:
    code = make_national_code(first9)
    if code[position] == digit:
        return
    changed = code[:position] + digit + code[position + 1 :]
    if position == 9:
        # each residue has exactly one check digit: a changed check digit never passes
        assert not is_national_code(changed)
        return
    # A changed digit always changes the weighted sum mod 11 (weights 2..10, 11 is prime);
    # the only residues sharing a check digit are 1 and 10 (both give 1), a known limit
    # of the national-code algorithm itself.
    assert national_residue(changed) != national_residue(code)
    alias = {national_residue(changed), national_residue(code)} == {1, 10}
    assert is_national_code(changed) == (alias and len(set(changed)) > 1)


@given(code=ten_digits)
def test_a_national_code_validates_exactly_when_its_check_digit_is_right(code: str) -> None:
    assert is_national_code(code) == reference_national_code(code)
    if len(set(code[:9])) > 1:
        assert is_national_code(code) == (code == make_national_code(code[:9]))


def test_known_national_codes() -> None:
    assert is_national_code("0499370899")
    assert not is_national_code("0499370898")
    assert not is_national_code("0000000000")
    assert not is_national_code("1111111111")
    assert not is_national_code("049937089")
    assert not is_national_code("04993708990")


# -- national legal ids (شناسه ملی) -------------------------------------------------


@given(first10=legal_first10)
def test_a_made_legal_id_always_validates(first10: str) -> None:
    legal_id = make_legal_id(first10)
    assert len(legal_id) == 11 and legal_id.startswith(first10)
    assert is_legal_id(legal_id)


@given(first10=ten_digits.filter(lambda s: s[3:9] == "000000") | st.just("1230000004"))
def test_a_legal_id_whose_digits_four_to_nine_are_zero_is_invalid_even_with_a_right_check_digit(
    first10: str,
) -> None:
    assert not is_legal_id(make_legal_id(first10))


@given(first10=legal_first10, position=st.integers(0, 10), digit=digits)
def test_changing_one_digit_of_a_legal_id_invalidates_it_except_for_the_check_digit_alias(
    first10: str, position: int, digit: str
) -> None:
    legal_id = make_legal_id(first10)
    if legal_id[position] == digit:
        return
    changed = legal_id[:position] + digit + legal_id[position + 1 :]
    if position == 10:
        assert not is_legal_id(changed)
        return
    # Every digit's weight is non-zero mod 11, so the residue always changes; residues 0
    # and 10 share the check digit 0, the one alias of the legal-id algorithm.
    assert legal_residue(changed) != legal_residue(legal_id)
    alias = {legal_residue(changed), legal_residue(legal_id)} == {0, 10}
    assert is_legal_id(changed) == (alias and changed[3:9] != "000000")


@given(legal_id=st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_a_legal_id_validates_exactly_when_its_check_digit_is_right(legal_id: str) -> None:
    assert is_legal_id(legal_id) == reference_legal_id(legal_id)


def test_known_legal_ids() -> None:
    for legal_id in ("10100387143", "14003000014", "14007650912"):
        assert is_legal_id(legal_id), legal_id
    assert not is_legal_id("10100387144")
    assert not is_legal_id("00000000000")


# -- round trips -----------------------------------------------------------------------


@given(raw=service_ids)
def test_a_well_formed_service_id_parses_and_prints_back_unchanged(raw: str) -> None:
    sid = parse_service_id(raw)
    assert str(sid) == raw
    assert str(parse_topic_id(raw)) == raw
    assert str(sid.subsystem) == raw.rsplit("/", 1)[0]
    assert str(parse_subsystem_id(str(sid.subsystem))) == str(sid.subsystem)
    assert str(parse_member_id(str(sid.subsystem.member))) == str(sid.subsystem.member)
    assert sid.subsystem.member.legal_id == raw.split("/")[2]


@given(raw=subsystem_ids)
def test_a_well_formed_client_id_parses_and_prints_back_unchanged(raw: str) -> None:
    assert str(parse_subsystem_id(raw)) == raw


@given(raw=member_ids)
def test_a_well_formed_member_id_parses_and_prints_back_unchanged(raw: str) -> None:
    mid = parse_member_id(raw)
    assert str(mid) == raw
    assert mid.member_class in MEMBER_CLASSES


@given(raw=service_ids, suffix=st.sampled_from(["/", "/x", " ", "\n", ".", "..", "/.."]))
def test_a_service_id_with_anything_after_it_is_not_a_service_id(raw: str, suffix: str) -> None:
    try:
        parse_service_id(raw + suffix)
    except InvalidIdentifier:
        return
    raise AssertionError(f"{raw + suffix!r} was accepted")


@given(raw=st.text(alphabet="0123456789", min_size=10, max_size=10))
@example(raw="1111111111")
@example(raw="1311111111")
def test_postal_codes_follow_their_digit_rules(raw: str) -> None:
    expected = (
        not set(raw[:4]) & {"0", "2"}
        and len(set(raw[:4])) > 1
        and raw[4] not in "025"
        and "2" not in raw[5:]
    )
    assert is_postal_code(raw) == expected
