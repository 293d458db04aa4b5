"""Typed app keys of the checkins service."""

from __future__ import annotations

import jinja2
from aiohttp import web

from services.checkins.privacy import Pseudonyms
from shared.lti.launch_token import LaunchTokens

TOKENS_KEY = web.AppKey("launch_tokens", LaunchTokens)
PSEUDONYMS_KEY = web.AppKey("pseudonyms", Pseudonyms)
PAGES_KEY = web.AppKey("checkins_pages", jinja2.Environment)
