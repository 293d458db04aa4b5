"""The tool's own URLs, per region, derived from settings."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.settings import Settings, SettingsError

LOGIN_PATH = "/lti/login"
LAUNCH_PATH = "/lti/launch"
APP_PATH = "/app"
LANG_PARAM = "lang"  # the app page's language, from the launch (/app/?f=...&lang=pt-BR)
JWKS_PATH = "/.well-known/jwks.json"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _check_base(var: str, url: str, *, allow_http: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise SettingsError(
            f'invalid configuration: {var} is invalid: "{url}" is not a base URL (https://host)'
        )
    if parts.scheme == "http" and not allow_http:
        raise SettingsError(
            f"invalid configuration: {var} is invalid: it must be https "
            "(ATTUNE_ALLOW_INSECURE_URLS=true allows http in development)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class ToolUrls:
    public_url: str
    region: str
    regions: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> ToolUrls:
        allow_http = settings.allow_insecure_urls
        if settings.public_url is None:
            raise SettingsError("invalid configuration: ATTUNE_PUBLIC_URL is missing")
        public = _check_base("ATTUNE_PUBLIC_URL", settings.public_url, allow_http=allow_http)
        regions: dict[str, str] = {}
        if settings.regions:
            for item in settings.regions.split(","):
                name, sep, url = item.strip().partition("=")
                if not sep or not name.strip():
                    raise SettingsError(
                        "invalid configuration: ATTUNE_REGIONS is invalid: use region=url,..."
                    )
                regions[name.strip()] = _check_base(
                    "ATTUNE_REGIONS", url.strip(), allow_http=allow_http
                )
        else:
            regions[settings.region] = public
        if settings.region not in regions:
            raise SettingsError(
                f'invalid configuration: ATTUNE_REGION is invalid: "{settings.region}" is not '
                "in ATTUNE_REGIONS"
            )
        return cls(public, settings.region, regions)

    def base(self, region: str | None = None) -> str:
        return self.regions[region or self.region]

    def login_url(self, region: str | None = None) -> str:
        return self.base(region) + LOGIN_PATH

    def launch_url(self, region: str | None = None) -> str:
        return self.base(region) + LAUNCH_PATH

    def app_url(self, region: str | None = None) -> str:
        """Where a launch in ``region`` (default: this one) hands the browser to the app: that
        region's own host, whose cell holds the launch."""
        return self.base(region) + APP_PATH

    def where(self, region: str | None) -> tuple[str, str | None]:
        """(region, its login URL when the map knows it), for a refusal that names both."""
        name = region or self.region
        return name, self.login_url(name) if name in self.regions else None

    @property
    def redirect_uris(self) -> list[str]:
        """Every region's launch URL: all must be registered with the platform."""
        return [self.launch_url(r) for r in self.regions]

    @property
    def target_link_uri(self) -> str:
        return self.public_url + APP_PATH

    @property
    def jwks_url(self) -> str:
        return self.public_url + JWKS_PATH

    def is_ours(self, url: str) -> bool:
        """A URL on one of the tool's own origins (public or regional)."""
        try:
            origin = _origin(url)
        except ValueError:
            return False
        ours = {_origin(self.public_url), *(_origin(u) for u in self.regions.values())}
        return origin in ours
