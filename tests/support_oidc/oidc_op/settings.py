"""Django settings of a throw-away OpenID Connect provider (django-oidc-provider) for the tests.

Everything comes from environment variables set by ``tests/support_oidc/provider.py``:
OP_DATA_DIR (its SQLite database), OP_SITE_URL (fixes the issuer: ``<OP_SITE_URL>/openid``),
OP_IDTOKEN_EXPIRE (seconds; negative: the ID tokens it issues have already expired).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ["OP_DATA_DIR"])

SECRET_KEY = "test-only-provider-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "oidc_provider"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "oidc_op.urls"
WSGI_APPLICATION = "oidc_op.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "provider.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# Test users only: PBKDF2's default work factor costs ~0.3 s per login on two cores.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "/accounts/login/"
# The application under test also runs on 127.0.0.1, and cookies ignore ports: keep the names apart.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"

SITE_URL = os.environ["OP_SITE_URL"]  # issuer = SITE_URL + "/openid" (else taken from each request's Host)
OIDC_USERINFO = "oidc_op.claims.userinfo"  # what a facility's provider sends: preferred_username, name, email
OIDC_IDTOKEN_INCLUDE_CLAIMS = os.environ.get("OP_CLAIMS_IN_ID_TOKEN", "1") == "1"
OIDC_IDTOKEN_EXPIRE = int(os.environ.get("OP_IDTOKEN_EXPIRE", "600"))

LOGGING = {"version": 1, "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["stderr"], "level": "WARNING"}}
