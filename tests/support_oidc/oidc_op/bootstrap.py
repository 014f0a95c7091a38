"""One-shot set-up of the provider's database: ``python -m oidc_op.bootstrap CONFIG.json OUT.json``.

CONFIG: {"users": [{"username", "password", "email", "first_name", "last_name"}],
         "clients": [{"client_id", "client_secret", "redirect_uris": [...], "require_consent": false}]}
Migrates, creates the RSA signing key (RS256, served at /openid/jwks), the users and the clients
(confidential, response type code); writes {"subjects": {username: sub}} to OUT.json (the subject
django-oidc-provider gives a user is its database id).
"""

import json
import os
import sys


def main(config_path: str, out_path: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oidc_op.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType, RSAKey

    with open(config_path) as handle:
        config = json.load(handle)
    call_command("migrate", verbosity=0, interactive=False)
    if not RSAKey.objects.exists():
        call_command("creatersakey")
    users = get_user_model()
    subjects = {}
    for spec in config.get("users", []):
        user, _ = users.objects.get_or_create(username=spec["username"])
        user.email = spec.get("email", "")
        user.first_name = spec.get("first_name", "")
        user.last_name = spec.get("last_name", "")
        user.set_password(spec["password"])
        user.save()
        subjects[user.username] = str(user.id)
    code = ResponseType.objects.get(value="code")  # the response types come from a data migration
    for spec in config.get("clients", []):
        client, _ = Client.objects.get_or_create(client_id=spec["client_id"])
        client.name = spec.get("name", spec["client_id"])
        client.client_type = "confidential"
        client.client_secret = spec["client_secret"]
        client.redirect_uris = spec["redirect_uris"]
        client.scope = ["openid", "email", "profile"]
        client.jwt_alg = "RS256"
        client.require_consent = spec.get("require_consent", False)
        client.reuse_consent = True
        client.save()
        client.response_types.set([code])
    with open(out_path, "w") as handle:
        json.dump({"subjects": subjects}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
