"""Typed settings shared by the CLI, the GUI's settings dialog and the HTTP endpoint.

Defaults are tuned on the reference photos in `../shared/faces` with the offline pack: same-person
similarity 0.59-0.72, different people at most 0.15, hence a duplicate threshold of 0.45.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator


class MultiFacePolicy(StrEnum):
    REJECT = "reject"
    LARGEST = "largest"


def _default_infer_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class FetchSettings(BaseModel):
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0)
    max_bytes: int = Field(15 * 1024 * 1024, gt=0, description="Largest download accepted")
    max_redirects: int = Field(5, ge=0)
    retries: int = Field(2, ge=0, description="Extra tries after a network error, 5xx or 429")
    backoff_s: float = Field(0.25, ge=0, description="First retry delay; doubles each try")
    allow_local: bool = Field(True, description="Accept file:// URLs and local paths")
    allow_private_networks: bool = Field(
        True,
        description="Download from loopback, link-local and private addresses (checked at "
        "connect time); the HTTP endpoint turns this off unless told otherwise",
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR blocks reachable even when private networks are refused, e.g. an "
        "intranet photo server's 10.0.5.0/24",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for text in value:
            ipaddress.ip_network(text.strip(), strict=False)  # ValueError names the bad block
        return value


class QualitySettings(BaseModel):
    det_size: int = Field(640, ge=160, le=1920, description="Detector input side (square)")
    det_threshold: float = Field(0.5, ge=0.05, le=0.99, description="Score to count a detection")
    min_det_score: float = Field(
        0.6, ge=0, le=1, description="Score under which a face is low quality"
    )
    min_face_size: int = Field(48, ge=8, description="Shorter box side in pixels")
    min_blur: float = Field(25.0, ge=0, description="Laplacian variance of the aligned face")
    max_pixels: int = Field(40_000_000, gt=0, description="Largest image accepted, in pixels")
    multi_face: MultiFacePolicy = MultiFacePolicy.REJECT
    duplicate_threshold: float = Field(0.45, gt=-1, le=1)


class BatchSettings(BaseModel):
    replace: bool = False
    strict_replace: bool = False
    create_missing_users: bool = True
    fetch_workers: int = Field(8, ge=1, le=64)
    infer_workers: int = Field(default_factory=_default_infer_workers, ge=1, le=16)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
