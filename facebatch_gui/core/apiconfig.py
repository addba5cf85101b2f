"""Settings of the embedded HTTP endpoint: a plain pydantic model in the core, so the GUI can
edit and persist it with the rest of the app settings without importing the web stack."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator

from facebatch_gui.core.errors import FaceBatchError


class ApiConfigError(FaceBatchError):
    """The endpoint cannot start with these settings (unsafe exposure, bad address)."""


class ApiConfig(BaseModel):
    enabled: bool = Field(False, description="Start the endpoint with the GUI")
    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    token: str | None = Field(
        None, description="Bearer token every route but /health requires; needed off loopback"
    )
    allow_private_urls: bool = Field(
        False,
        description="Let HTTP tasks download from loopback, link-local and private addresses",
    )
    allowed_networks: list[str] = Field(
        default_factory=list, description="CIDR blocks HTTP tasks may download from regardless"
    )
    max_users_per_batch: int = Field(10_000, ge=1, description="More are refused with 422")
    max_concurrent_tasks: int = Field(4, ge=1, description="More are refused with 429")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Larger request bodies are refused with 413"
    )

    @field_validator("token")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for text in value:
            ipaddress.ip_network(text.strip(), strict=False)
        return value


def is_loopback_host(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may be reachable from elsewhere


def check_exposure(config: ApiConfig) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback_host(config.host) and not config.token:
        raise ApiConfigError(
            f"Refusing to listen on {config.host} without a token: anyone who can reach that "
            "address could start batches and read their results. Set a token (--token or "
            "FACEBATCH_API_TOKEN), or listen on 127.0.0.1."
        )
