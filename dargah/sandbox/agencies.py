"""The fictional agencies of the sandbox, as plain data.

Each :class:`Agency` is a GOV member with a checksum-valid legal ID and one
subsystem (``subsystem_code``) that provides bus services. Each
:class:`ServiceSpec` says what the registry needs (title, personal-data flag,
purposes, the data items it is the authentic source of) and how to try it
(``example_method`` and ``example_path``, where ``{subject}`` stands for a
citizen's national code and which answers 2xx for every generated citizen).
:func:`dargah.sandbox.openapi.openapi_document` gives each service's OpenAPI.
"""

from __future__ import annotations

from typing import Any

from dargah.core.purposes import PURPOSES as NATIONAL_PURPOSES
from dargah.sandbox.model import Agency, Operation, ServiceSpec, TopicSpec

__all__ = [
    "AGENCIES",
    "DATA_ITEMS",
    "PURPOSES",
    "Agency",
    "Operation",
    "ServiceSpec",
    "TopicSpec",
    "agency",
    "catalogue",
    "service_ids",
]

PURPOSES = NATIONAL_PURPOSES
"""Purpose codes (for ``GSB-Purpose``) and their Persian titles."""

DATA_ITEMS: dict[str, str] = {
    "person.identity": "مشخصات هویتی",
    "person.vital-status": "وضعیت حیات",
    "person.family": "اطلاعات خانواده",
    "person.birth": "ثبت ولادت",
    "person.mobile": "تلفن همراه",
    "address.postal": "نشانی و کد پستی",
    "tax.status": "وضعیت مؤدی مالیاتی",
    "driving.licence": "گواهینامه رانندگی",
    "driving.fines": "جریمه‌های رانندگی",
    "vehicle.ownership": "مالکیت وسیله نقلیه",
    "welfare.eligibility": "استحقاق حمایت بهزیستی",
    "welfare.application": "درخواست حمایت بهزیستی",
}
"""Data items (what a service ``supplies``) and their Persian titles."""

ALL_PURPOSES = tuple(PURPOSES)


def _get(path: str, summary_fa: str, response: str) -> Operation:
    return Operation("GET", path, summary_fa, response)


CIVIL_REGISTRATION = Agency(
    subsystem_code="sabt",
    legal_id="10100387143",
    name_fa="سازمان ثبت احوال کشور",
    name_en="National Organization for Civil Registration",
    services=(
        ServiceSpec(
            code="person-inquiry.v1",
            title_fa="استعلام مشخصات هویتی",
            title_en="Identity inquiry",
            personal_data=True,
            purposes=ALL_PURPOSES,
            supplies=("person.identity", "person.vital-status"),
            example_path="/persons/{subject}",
            operations=(_get("/persons/{national_code}", "مشخصات هویتی و وضعیت حیات", "Person"),),
        ),
        ServiceSpec(
            code="family-inquiry.v1",
            title_fa="استعلام اطلاعات خانواده",
            title_en="Family inquiry",
            personal_data=True,
            purposes=("benefit-eligibility", "service-application"),
            supplies=("person.family",),
            example_path="/persons/{subject}/family",
            operations=(
                _get("/persons/{national_code}/family", "همسر، والدین و فرزندان", "Family"),
            ),
        ),
        ServiceSpec(
            code="mobile-inquiry.v1",
            title_fa="استعلام تلفن همراه ثبت‌شده",
            title_en="Registered mobile inquiry",
            personal_data=True,
            purposes=("identity-verification",),
            supplies=("person.mobile",),
            example_path="/persons/{subject}/mobile",
            operations=(
                _get("/persons/{national_code}/mobile", "تلفن همراه به نام شخص", "Mobile"),
            ),
        ),
        ServiceSpec(
            code="birth-registration.v1",
            title_fa="ثبت ولادت",
            title_en="Birth registration",
            personal_data=True,
            purposes=("service-application", "identity-verification"),
            supplies=("person.birth",),
            example_path="/persons/{subject}/birth-certificate",
            operations=(
                Operation("POST", "/births", "ثبت ولادت نوزاد", "BirthCertificate", "Birth", 201),
                _get("/persons/{national_code}/birth-certificate", "شناسنامه", "BirthCertificate"),
            ),
        ),
    ),
    topics=(
        TopicSpec("birth-registered.v1", "ثبت ولادت", "Birth registered"),
        TopicSpec("death-registered.v1", "ثبت وفات", "Death registered"),
    ),
)

POST = Agency(
    subsystem_code="post",
    legal_id="10100345616",
    name_fa="شرکت ملی پست جمهوری اسلامی ایران",
    name_en="Iran National Post Company",
    services=(
        ServiceSpec(
            code="address-inquiry.v1",
            title_fa="استعلام نشانی",
            title_en="Address inquiry",
            personal_data=True,
            purposes=ALL_PURPOSES,
            supplies=("address.postal",),
            example_path="/persons/{subject}/address",
            operations=(
                _get("/persons/{national_code}/address", "نشانی محل سکونت شخص", "Address"),
                _get("/addresses/{postal_code}", "نشانی یک کد پستی", "Address"),
            ),
        ),
        ServiceSpec(
            code="postcode-validation.v1",
            title_fa="اعتبارسنجی کد پستی",
            title_en="Postcode validation",
            personal_data=False,
            purposes=("service-application",),
            supplies=(),
            example_path="/postcodes/1559996911",
            operations=(_get("/postcodes/{postal_code}", "درستی و وجود کد پستی", "PostcodeCheck"),),
        ),
    ),
)

TAX = Agency(
    subsystem_code="tax",
    legal_id="14000421767",
    name_fa="سازمان امور مالیاتی کشور",
    name_en="Iranian National Tax Administration",
    services=(
        ServiceSpec(
            code="taxpayer-inquiry.v1",
            title_fa="استعلام وضعیت مؤدی مالیاتی",
            title_en="Taxpayer inquiry",
            personal_data=True,
            purposes=("tax-assessment", "benefit-eligibility", "service-application"),
            supplies=("tax.status",),
            example_path="/taxpayers/{subject}",
            operations=(_get("/taxpayers/{national_code}", "پرونده مالیاتی شخص", "Taxpayer"),),
        ),
    ),
)

TRAFFIC_POLICE = Agency(
    subsystem_code="rahvar",
    legal_id="10101389476",
    name_fa="پلیس راهور فراجا",
    name_en="Traffic Police",
    services=(
        ServiceSpec(
            code="licence-inquiry.v1",
            title_fa="استعلام گواهینامه رانندگی",
            title_en="Driving licence inquiry",
            personal_data=True,
            purposes=("identity-verification", "vehicle-transfer", "service-application"),
            supplies=("driving.licence",),
            example_path="/licences/{subject}",
            operations=(_get("/licences/{national_code}", "گواهینامه و وضعیت آن", "Licence"),),
        ),
        ServiceSpec(
            code="fines-inquiry.v1",
            title_fa="استعلام خلافی",
            title_en="Traffic fines inquiry",
            personal_data=True,
            purposes=("vehicle-transfer", "service-application"),
            supplies=("driving.fines",),
            example_path="/fines/{subject}",
            operations=(_get("/fines/{national_code}", "جریمه‌های رانندگی شخص", "Fines"),),
        ),
        ServiceSpec(
            code="vehicle-inquiry.v1",
            title_fa="استعلام خودروهای شخص",
            title_en="Vehicle ownership inquiry",
            personal_data=True,
            purposes=(
                "vehicle-transfer",
                "tax-assessment",
                "benefit-eligibility",
                "service-application",
            ),
            supplies=("vehicle.ownership",),
            example_path="/persons/{subject}/vehicles",
            operations=(
                _get("/persons/{national_code}/vehicles", "پلاک خودروهای شخص", "Vehicles"),
            ),
        ),
    ),
)

WELFARE = Agency(
    subsystem_code="behzisti",
    legal_id="14000873125",
    name_fa="سازمان بهزیستی کشور",
    name_en="State Welfare Organization",
    services=(
        ServiceSpec(
            code="eligibility-inquiry.v1",
            title_fa="استعلام استحقاق حمایت",
            title_en="Welfare eligibility inquiry",
            personal_data=True,
            purposes=("benefit-eligibility", "service-application"),
            supplies=("welfare.eligibility",),
            example_path="/eligibility/{subject}",
            operations=(
                _get("/eligibility/{national_code}", "برنامه‌های حمایتی قابل دریافت", "Eligibility"),
            ),
        ),
        ServiceSpec(
            code="benefit-application.v1",
            title_fa="ثبت و پیگیری درخواست حمایت",
            title_en="Welfare applications",
            personal_data=True,
            purposes=("service-application",),
            supplies=("welfare.application",),
            example_path="/persons/{subject}/applications",
            operations=(
                Operation(
                    "POST", "/applications", "ثبت درخواست", "Application", "NewApplication", 201
                ),
                _get("/applications/{application_id}", "پیگیری درخواست", "Application"),
                _get("/persons/{national_code}/applications", "درخواست‌های شخص", "Applications"),
            ),
        ),
    ),
)

AGENCIES: tuple[Agency, ...] = (CIVIL_REGISTRATION, POST, TAX, TRAFFIC_POLICE, WELFARE)
"""Every sandbox agency; each one's provider base URL is ``{sandbox_url}/{subsystem_code}``."""


def agency(subsystem_code: str) -> Agency:
    """The agency with this subsystem code; KeyError when there is none."""
    for a in AGENCIES:
        if a.subsystem_code == subsystem_code:
            return a
    raise KeyError(subsystem_code)


def service_ids(instance: str) -> dict[str, tuple[Agency, ServiceSpec]]:
    """Every sandbox bus service id on ``instance``, with its agency and spec."""
    return {a.service_id(instance, s.code): (a, s) for a in AGENCIES for s in a.services}


def catalogue(instance: str, sandbox_url: str) -> list[dict[str, Any]]:
    """What registering the sandbox needs, one entry per service, in ``demo.json``'s words.

    Each entry: ``service`` (id), ``subsystem``, ``member``, ``agency_fa``,
    ``title`` (Persian), ``url`` (the provider base URL), ``personal_data``,
    ``purposes``, ``supplies`` and ``example`` (``{"method", "path"}``).
    """
    base = sandbox_url.rstrip("/")
    return [
        {
            "service": a.service_id(instance, s.code),
            "subsystem": a.subsystem_id(instance),
            "member": a.member_id(instance),
            "agency_fa": a.name_fa,
            "title": s.title_fa,
            "url": f"{base}/{a.subsystem_code}",
            "personal_data": s.personal_data,
            "purposes": list(s.purposes),
            "supplies": list(s.supplies),
            "example": {"method": s.example_method, "path": s.example_path},
        }
        for a in AGENCIES
        for s in a.services
    ]
