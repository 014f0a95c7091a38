"""A real OpenID Connect provider for the login tests: django-oidc-provider served by waitress on
127.0.0.1 in a subprocess (``provider.OIDCProvider``); its Django project is ``oidc_op/``."""
