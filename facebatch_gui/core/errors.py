"""Machine-readable error codes for per-user outcomes.

Every failure that reaches an operator carries one of these codes plus a human message naming the
cause, so that scripts can branch on the code and people can act on the message.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    USER_NOT_FOUND = "user_not_found"
    FACE_ALREADY_REGISTERED = "face_already_registered"
    NO_FACE_REGISTERED = "no_face_registered"
    INVALID_INPUT = "invalid_input"
    DOWNLOAD_FAILED = "download_failed"
    IMAGE_TOO_LARGE = "image_too_large"
    NOT_AN_IMAGE = "not_an_image"
    NO_FACE_DETECTED = "no_face_detected"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    LOW_QUALITY = "low_quality"
    DUPLICATE_FACE = "duplicate_face"
    IDENTITY_MISMATCH = "identity_mismatch"
    DATABASE_ERROR = "database_error"
    CANCELLED = "cancelled"


class ItemError(Exception):
    """A failure of one user's item; the batch goes on with the others."""

    def __init__(self, code: ErrorCode, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class FaceBatchError(Exception):
    """A failure of the whole run (configuration, models, store), not of one user."""


class ModelPackError(FaceBatchError):
    """The face model pack is missing, incomplete or unusable."""


class PackMismatchError(FaceBatchError):
    """Embeddings of two different model packs were about to be compared."""


class StoreError(FaceBatchError):
    """The face store cannot be opened or used."""
