"""FaceBatch: enroll or remove the faces of many users at once."""

__version__ = "0.1.0"
