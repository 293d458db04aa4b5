"""Peer A of the launch benchmark: a minimal pylti1p3 2.0 Flask tool (from the team's peer study,
shared/bench/peers/pylti1p3_tool/app.py, unchanged apart from this note). Run by bench/peer.py
under gunicorn in its own virtualenv (.bench/pylti1p3); never imported by Attune.


Env:
  LTI_ISS, LTI_CLIENT_ID, LTI_DEPLOYMENT_ID   the one registration
  LTI_KEY_SET_URL    platform JWKS URL (fetched once per worker, then cached)
  LTI_AUTH_URL       platform OIDC auth URL (only used to build the 302 Location)
  TOOL_BASE_URL      e.g. http://127.0.0.1:8001 (launch URL = TOOL_BASE_URL/launch/)
  LAUNCH_STORAGE     'session' (default: pylti1p3's default FlaskSessionService -> state-id,
                     nonce and launch data live in Flask's signed-cookie session) or
                     'cache' (FlaskCacheDataStorage on the Flask-Caching backend below,
                     server-side; needs a cache shared by all workers, e.g. FileSystemCache)
  CACHE_TYPE         Flask-Caching backend: SimpleCache (default, per process) or FileSystemCache
  CACHE_DIR          directory for FileSystemCache
The JWKS is always cached with MessageLaunch.set_public_key_caching(FlaskCacheDataStorage(cache)).
"""

import os
from html import escape

from flask import Flask
from flask_caching import Cache
from pylti1p3.contrib.flask import (
    FlaskCacheDataStorage,
    FlaskMessageLaunch,
    FlaskOIDCLogin,
    FlaskRequest,
)
from pylti1p3.tool_config import ToolConfDict

ISS = os.environ.get("LTI_ISS", "https://platform.example.org")
CLIENT_ID = os.environ.get("LTI_CLIENT_ID", "perf-client")
DEPLOYMENT_ID = os.environ.get("LTI_DEPLOYMENT_ID", "perf-deployment")
KEY_SET_URL = os.environ.get("LTI_KEY_SET_URL", "http://127.0.0.1:9001/jwks.json")
AUTH_URL = os.environ.get("LTI_AUTH_URL", "http://127.0.0.1:9001/auth")
BASE = os.environ.get("TOOL_BASE_URL", "http://127.0.0.1:8001")
LAUNCH_URL = BASE + "/launch/"
LAUNCH_STORAGE = os.environ.get("LAUNCH_STORAGE", "session")

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("FLASK_SECRET", "perf-secret-not-for-production"),
    SESSION_COOKIE_NAME="session-id-flask",
    CACHE_TYPE=os.environ.get("CACHE_TYPE", "SimpleCache"),
    CACHE_DIR=os.environ.get(
        "CACHE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fscache")
    ),
    CACHE_DEFAULT_TIMEOUT=600,
    CACHE_THRESHOLD=int(os.environ.get("CACHE_THRESHOLD", "100000")),
)
cache = Cache(app)

tool_conf = ToolConfDict(
    {
        ISS: {
            "default": True,
            "client_id": CLIENT_ID,
            "auth_login_url": AUTH_URL,
            "auth_token_url": AUTH_URL.rsplit("/", 1)[0] + "/token",
            "auth_audience": None,
            "key_set_url": KEY_SET_URL,
            "key_set": None,
            "deployment_ids": [DEPLOYMENT_ID],
        }
    }
)


def launch_data_storage():
    return FlaskCacheDataStorage(cache) if LAUNCH_STORAGE == "cache" else None


@app.route("/login/", methods=["GET", "POST"])
def login():
    oidc_login = FlaskOIDCLogin(
        FlaskRequest(), tool_conf, launch_data_storage=launch_data_storage()
    )
    return oidc_login.redirect(LAUNCH_URL)


@app.route("/launch/", methods=["POST"])
def launch():
    message_launch = FlaskMessageLaunch(
        FlaskRequest(), tool_conf, launch_data_storage=launch_data_storage()
    )
    message_launch.set_public_key_caching(FlaskCacheDataStorage(cache), cache_lifetime=7200)
    data = message_launch.get_launch_data()  # runs validate(): state, nonce, sig, claims
    name = data.get("name", "")
    return (
        "<!doctype html><html><body><h1>Hello "
        + escape(name)
        + "</h1><p>launch "
        + escape(message_launch.get_launch_id())
        + "</p></body></html>"
    )


@app.route("/health")
def health():
    return "ok"
