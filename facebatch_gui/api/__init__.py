"""The embedded HTTP endpoint (FastAPI on uvicorn); Qt-free, it talks to a core `TaskService`."""

from facebatch_gui.api.app import create_app
from facebatch_gui.api.server import ApiServer
from facebatch_gui.core.apiconfig import ApiConfig, ApiConfigError, check_exposure

__all__ = ["ApiConfig", "ApiConfigError", "ApiServer", "check_exposure", "create_app"]
