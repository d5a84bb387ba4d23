"""The management API's request and response bodies.

Input is validated here, field by field, so that anything malformed is a
``400 bad-request`` naming the field, never a 500 from deeper down: lengths and
numbers are bounded, text must be valid Unicode without control characters,
identifiers are checked against the protocol (§1), legal IDs by their checksum.
Input models refuse unknown fields, so a misspelt field is an error, not a no-op.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from dargah.core.errors import DargahError
from dargah.core.identifiers import is_legal_id, parse_service_id, parse_subsystem_id
from dargah.registry.grants import PURPOSE_RE
from dargah.registry.services import DATA_ITEM_RE, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT_S


def _clean_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


def _legal_id(value: str) -> str:
    if not is_legal_id(value):
        raise ValueError(f"{value} is not a valid national legal ID (its check digit is wrong)")
    return value


def _client_id(value: str) -> str:
    try:
        return str(parse_subsystem_id(value))
    except DargahError as exc:
        raise ValueError(exc.detail) from None


def _service_id(value: str) -> str:
    try:
        return str(parse_service_id(value))
    except DargahError as exc:
        raise ValueError(exc.detail) from None


def _http_url(value: str) -> str:
    try:
        url = urlsplit(value)
        _ = url.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be an http(s) URL with a host")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=200, examples=["سازمان ثبت احوال کشور"]),
    AfterValidator(_clean_text),
]
Reason = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_clean_text)]
MemberClass = Literal["GOV", "PUB", "COM", "NGO"]
MEMBER_ID_PATTERN = r"^[A-Z]{2,8}/(GOV|PUB|COM|NGO)/[0-9]{11}$"
CLIENT_ID_PATTERN = MEMBER_ID_PATTERN.removesuffix("$") + r"/[a-z][a-z0-9-]{1,39}$"
SERVICE_ID_PATTERN = CLIENT_ID_PATTERN.removesuffix("$") + r"/[a-z][a-z0-9-]*(\.v[0-9]+)?$"
LegalId = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{11}$",
        description="11-digit national legal ID (شناسه ملی), checksum-validated",
        examples=["10100387143"],
    ),
    AfterValidator(_legal_id),
]
ClientId = Annotated[
    str,
    Field(
        max_length=120,
        pattern=CLIENT_ID_PATTERN,
        description="Client id of a subsystem: INSTANCE/CLASS/LEGAL_ID/CODE",
        examples=["DEV/GOV/10100387143/sabt"],
    ),
    AfterValidator(_client_id),
]
ServiceId = Annotated[
    str,
    Field(
        max_length=200,
        pattern=SERVICE_ID_PATTERN,
        description="Bus service id: INSTANCE/CLASS/LEGAL_ID/SUBSYSTEM/CODE",
        examples=["DEV/GOV/10100387143/sabt/person-inquiry.v1"],
    ),
    AfterValidator(_service_id),
]
Purpose = Annotated[
    str, Field(pattern=f"^{PURPOSE_RE.pattern}$", max_length=64, examples=["identity-check"])
]
DataItem = Annotated[
    str, Field(pattern=f"^{DATA_ITEM_RE.pattern}$", max_length=100, examples=["person.identity"])
]
BaseUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000, examples=["https://sabt.example/api"]),
    AfterValidator(_clean_text),
    AfterValidator(_http_url),
]
Timeout = Annotated[
    float,
    Field(gt=0, le=300, allow_inf_nan=False, description="Seconds the bus waits for the provider."),
]
MaxBody = Annotated[
    int, Field(gt=0, le=1 << 30, description="Size limit in bytes, both directions.")
]
B64Url = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Problems ------------------------------------------------------------------------------------


class Problem(BaseModel):
    """RFC 9457 problem document: the one error shape of the API."""

    type: str = Field(examples=["urn:gsb:problem:bad-request"])
    title: str
    status: int
    code: str = Field(examples=["bad-request"])
    request_id: str | None
    detail: str
    detail_fa: str


# Members, subsystems, keys -------------------------------------------------------------------


class MemberIn(_In):
    legal_id: LegalId
    member_class: MemberClass = "GOV"
    name: Name
    name_en: Name | None = None


class Member(BaseModel):
    id: str = Field(description="INSTANCE/CLASS/LEGAL_ID", examples=["DEV/GOV/10100387143"])
    member_class: str
    legal_id: str
    name: str
    name_en: str | None
    status: str = Field(examples=["active", "revoked"])
    created_at: str


class SubsystemIn(_In):
    id: ClientId
    name: Name | None = None


class Subsystem(BaseModel):
    id: str
    member_id: str
    name: str | None
    status: str
    created_at: str


class SubsystemSecret(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; only its hash is kept.")


class JwkIn(BaseModel):
    """A public JWK: Ed25519 (``OKP``) or P-256 (``EC``, with ``y``). Other members (``kid``,
    ``alg``, ``use``...) are ignored; a private key (``d``) is refused."""

    model_config = ConfigDict(extra="ignore")
    kty: Literal["OKP", "EC"]
    crv: Literal["Ed25519", "P-256"]
    x: B64Url
    y: B64Url | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_private_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "d" in data:
            raise ValueError("send the public JWK only, never the private key ('d')")
        return data

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Key(BaseModel):
    kid: str = Field(description="RFC 7638 thumbprint of the key")
    subsystem_id: str
    alg: str
    jwk: dict[str, str]
    status: str
    created_at: str
    revoked_at: str | None


class CertificateIn(_In):
    """A system's client certificate for mutual TLS: the PEM certificate (self-signed or not),
    or only its ``x5t#S256`` thumbprint (for a certificate from a CA the bus trusts)."""

    pem: str | None = Field(default=None, max_length=16_384, description="PEM certificate")
    thumbprint: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="x5t#S256: base64url SHA-256 of the certificate's DER",
    )


class Certificate(BaseModel):
    thumbprint: str = Field(description="x5t#S256 of the certificate (RFC 8705)")
    subsystem_id: str
    pem: str | None = Field(description="the certificate, when it was registered whole")
    status: str
    created_at: str
    revoked_at: str | None


# Services ------------------------------------------------------------------------------------


class ServiceIn(_In):
    id: ServiceId
    base_url: BaseUrl
    title: Name | None = None
    personal_data: bool = False
    timeout_s: Timeout = DEFAULT_TIMEOUT_S
    max_body: MaxBody = DEFAULT_MAX_BODY
    openapi: dict[str, Any] | None = Field(
        default=None, description="The provider's OpenAPI document."
    )
    supplies: list[DataItem] = Field(
        default_factory=list,
        max_length=100,
        description="Data items this service is the authentic source of.",
    )
    store_bodies: bool = False


class ServicePatch(_In):
    """Only the fields sent change; ``openapi`` may be null (removes the document), no other may."""

    title: Name | None = None
    base_url: BaseUrl | None = None
    openapi: dict[str, Any] | None = None
    personal_data: bool | None = None
    timeout_s: Timeout | None = None
    max_body: MaxBody | None = None
    maintenance: bool | None = None
    store_bodies: bool | None = None
    supplies: list[DataItem] | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _no_nulls(self) -> ServicePatch:
        nulls = sorted(
            k for k in self.model_fields_set if k != "openapi" and getattr(self, k) is None
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in sorted(self.model_fields_set)}


class Service(BaseModel):
    id: str
    subsystem_id: str
    title: str
    base_url: str
    personal_data: bool
    timeout_s: float
    max_body: int
    maintenance: bool
    store_bodies: bool
    supplies: list[str]
    status: str = Field(examples=["active", "removed"])
    created_at: str
    has_openapi: bool


# Grants --------------------------------------------------------------------------------------

GrantStatus = Literal["requested", "approved", "rejected", "revoked"]


class GrantIn(_In):
    client_id: ClientId
    service_id: ServiceId
    purposes: list[Purpose] = Field(min_length=1, max_length=20)
    approve: bool = Field(
        default=False, description="The operator's direct grant: approved at once."
    )


class Decision(_In):
    reason: Reason | None = None


class Grant(BaseModel):
    id: int
    client_id: str
    service_id: str
    purposes: list[str]
    status: GrantStatus
    requested_by: str
    decided_by: str | None
    reason: str | None
    created_at: str
    decided_at: str | None


# Quotas, audit, instance ---------------------------------------------------------------------


class QuotaIn(_In):
    client_id: ClientId
    service_id: ServiceId | None = Field(default=None, description="Absent: the client-wide quota.")
    per_second: float = Field(ge=0.001, le=1_000_000, allow_inf_nan=False)
    burst: float | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        allow_inf_nan=False,
        description="Bucket size; defaults to the rate.",
    )


class Quota(BaseModel):
    client_id: str
    service_id: str | None = Field(description="null for the client-wide quota")
    per_second: float
    burst: float
    updated_at: str

    @field_validator("service_id", mode="before")
    @classmethod
    def _client_wide(cls, value: Any) -> Any:
        return value or None


class AuditEntry(BaseModel):
    id: int
    ts: str
    actor: str = Field(examples=["api:operator"])
    action: str = Field(examples=["registry:grant:approve"])
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class Instance(BaseModel):
    code: str = Field(examples=["DEV"])
    sandbox: bool
    created_at: str
